"""What `testgate status` and `testgate metrics` show: the snapshot and counters, the
depth of `tests`, the workers online (and, for the metrics, how each contains suites)."""

from __future__ import annotations

import logging
from typing import Any

from kombu.exceptions import OperationalError

from worker import names
from worker.celery_adapter.app import app
from worker.client import snapshot
from worker.errors import StateUnavailable
from worker.metrics import CONTAINMENT_MODES, render_metrics
from worker.settings import load_settings
from worker.state import RedisState

logger = logging.getLogger("testgate.status")


def queue_depth() -> int | None:
    """Jobs waiting on `tests` (on Redis: every priority list summed, as kombu counts)."""
    try:
        with app.connection_for_read() as conn:
            return int(
                conn.default_channel.queue_declare(names.TESTS_QUEUE, passive=True).message_count
            )
    except (OperationalError, OSError) as exc:
        logger.warning("queue depth unavailable: %s", exc)
        return None
    except Exception as exc:  # noqa: BLE001 - a passive declare of a missing queue raises per broker
        logger.info("queue %s not declared yet: %s", names.TESTS_QUEUE, exc)
        return 0


def workers_by_containment(timeout_s: float = 1.0) -> dict[str, int] | None:
    """Workers online, counted by how their suites run (each answers the inspect
    command of worker.celery_adapter.telemetry; one that cannot is `unknown`)."""
    try:
        replies = app.control.broadcast("testgate_containment", reply=True, timeout=timeout_s) or []
    except (OperationalError, OSError) as exc:
        logger.warning("workers unavailable: %s", exc)
        return None
    counts: dict[str, int] = {}
    for reply in replies:
        for answer in reply.values():
            mode = answer.get("containment") if isinstance(answer, dict) else None
            key = mode if mode in CONTAINMENT_MODES else "unknown"
            counts[key] = counts.get(key, 0) + 1
    return counts


def fleet_status(timeout_s: float = 1.0) -> dict[str, Any]:
    """Never raises: what cannot be read is reported as unavailable."""
    status = snapshot()
    depth, containment = queue_depth(), workers_by_containment(timeout_s)
    status["queue_depth"] = "unavailable" if depth is None else depth
    status["workers_online"] = "unavailable" if containment is None else sum(containment.values())
    return status


def metrics_text() -> str:
    """The fleet's metrics, read fresh on every scrape."""
    settings = load_settings()
    try:
        counters = RedisState.from_url(settings.state_redis_url, settings.key_prefix).counters()
    except StateUnavailable as exc:
        logger.warning("metrics without counters: %s", exc)
        counters = {}
    # One broadcast answers both: how many workers, and how each runs its suites.
    containment = workers_by_containment()
    online = None if containment is None else sum(containment.values())
    return render_metrics(counters, queue_depth(), online, containment)
