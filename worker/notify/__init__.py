"""Telling the outside world: the two events to the orchestrator (by Celery task name or
webhook), signed JSON POSTs with retry, and the infrastructure alerts."""
