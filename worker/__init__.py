"""testgate: a fleet of Celery workers that runs the deterministic test gate.

`celery -A worker worker -Q tests` finds `app` here.
"""

from worker.celery_app import app

__all__ = ["app"]
