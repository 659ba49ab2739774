"""The Celery side of observability: traces switched on in each pool process (by the
standard OTEL_* variables, worker.observe), the time a job's message waited on the
broker, and the inspect command that tells `testgate metrics` how this worker's suites
are contained.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from datetime import datetime
from typing import Any

from celery.signals import before_task_publish, worker_process_init, worker_process_shutdown
from celery.worker.control import inspect_command

from worker import names
from worker.containment.view import containment_missing
from worker.observe import configure_tracing, shutdown_tracing
from worker.settings import load_settings

logger = logging.getLogger("testgate.telemetry")

# When a message for the tests queue was published (seconds since the epoch). Stamped
# by worker.client.enqueue and by this worker's own publishes (retries, shards, merge);
# an orchestrator that sends by name may set it too, or the queue wait goes unmeasured.
SENT_AT_HEADER = "testgate_sent_at"
_OWN_TASKS = frozenset({names.RUN_TEST_GATE, names.RUN_TEST_SHARD, names.MERGE_TEST_SHARDS})


@worker_process_init.connect
def _start_tracing(**_: Any) -> None:
    """After the fork: the span exporter's thread belongs to the pool process."""
    configure_tracing(os.environ)


@worker_process_shutdown.connect
def _flush_tracing(**_: Any) -> None:
    shutdown_tracing()


@before_task_publish.connect
def _stamp_sent_at(sender: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and sender in _OWN_TASKS:
        headers[SENT_AT_HEADER] = time.time()


def queued_seconds(request: Any) -> float | None:
    """How long this delivery's message waited to be taken, not counting a retry's
    countdown; None when its sender did not stamp it. Clocks of two hosts may differ:
    never below zero."""
    sent = getattr(request, SENT_AT_HEADER, None)
    if not isinstance(sent, int | float):
        return None
    ready = float(sent)
    eta = getattr(request, "eta", None)
    if isinstance(eta, str):
        with contextlib.suppress(ValueError):  # unreadable: no countdown to take off
            ready = max(ready, datetime.fromisoformat(eta).timestamp())
    return max(0.0, time.time() - ready)


@functools.cache  # the answer cannot change while the worker runs
def containment_mode() -> str:
    """contained, uncontained or off: how this worker runs suites."""
    settings = load_settings()
    if settings.containment == "off":
        return "off"
    return "uncontained" if containment_missing(settings) else "contained"


@inspect_command()
def testgate_containment(state: Any, **_: Any) -> dict[str, str]:
    """`celery inspect testgate_containment`: how this worker's suites run."""
    return {"containment": containment_mode()}
