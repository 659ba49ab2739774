"""What `testgate status` shows: the snapshot, the depth of `tests`, workers online."""

from __future__ import annotations

import logging
from typing import Any

from kombu.exceptions import OperationalError

from worker.celery_app import app
from worker.client import QUEUE, snapshot

logger = logging.getLogger("testgate.status")


def fleet_status(timeout_s: float = 1.0) -> dict[str, Any]:
    """Never raises: what cannot be read is reported as unavailable."""
    status = snapshot()
    try:
        with app.connection_for_read() as conn:
            declared = conn.default_channel.queue_declare(QUEUE, passive=True)
            status["queue_depth"] = int(declared.message_count)
    except (OperationalError, OSError) as exc:
        logger.warning("queue depth unavailable: %s", exc)
        status["queue_depth"] = "unavailable"
    except Exception as exc:  # noqa: BLE001 - a passive declare of a missing queue raises per broker
        logger.info("queue %s not declared yet: %s", QUEUE, exc)
        status["queue_depth"] = 0
    try:
        replies = app.control.ping(timeout=timeout_s) or []
        status["workers_online"] = len(replies)
    except (OperationalError, OSError) as exc:
        logger.warning("workers unavailable: %s", exc)
        status["workers_online"] = "unavailable"
    return status
