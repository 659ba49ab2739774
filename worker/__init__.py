"""testgate: a fleet of Celery workers that runs the deterministic test gate.

`celery -A worker worker -Q tests` finds `app` here. It is loaded on first access, so
`from worker import client` (the orchestrator's side) imports no task and no runner.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from worker.celery_adapter.app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
