"""Celery as an adapter: the app and its start-up checks, the worker's context, and the
short task functions that call the pipeline. `celery -A worker` finds the app through
`worker.app`."""
