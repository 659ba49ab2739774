"""Celery adapter: the task the orchestrator sends by name. Short on purpose; the
job itself is `worker.pipeline.runner.run_gate`."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task

from worker import names
from worker.celery_adapter.app import app
from worker.celery_adapter.runtime import current_context, retry_budgeted, retry_undelivered
from worker.celery_adapter.telemetry import queued_seconds
from worker.errors import EventDeliveryError
from worker.pipeline.announce import Answer, fail_closed_after_crash
from worker.pipeline.context import GateContext
from worker.pipeline.runner import run_gate

logger = logging.getLogger("testgate.tasks")

TASK_NAME = names.RUN_TEST_GATE


@app.task(bind=True, name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def run_test_gate(self: Task, *args: Any, **job: Any) -> dict[str, Any]:
    """Run one tester job; returns a summary. Raises only Celery's own control flow
    (Retry to defer, Reject to give the message back when an event could not be sent)."""
    ctx = current_context()
    raw: Any = job if not args else (args[0] if len(args) == 1 and not job else list(args))
    attempt = int(self.request.retries or 0)
    delivery_id = str(self.request.id or uuid.uuid4())
    try:
        result = run_gate(
            raw,
            ctx,
            attempt=attempt,
            delivery_id=delivery_id,
            progress=lambda p: self.update_state(state="PROGRESS", meta=p.as_meta()),
            queued_s=queued_seconds(self.request),
        )
    except EventDeliveryError as exc:
        logger.error("task %s: event not delivered, job retried: %s", delivery_id, exc)
        raise retry_undelivered(self, ctx, exc) from exc
    except Exception as exc:
        logger.exception("task %s: unexpected error in the gate", delivery_id)
        if attempt < ctx.settings.infra_max_retries:
            raise retry_budgeted(self, ctx, exc) from exc
        return _fail_closed(self, ctx, raw, exc, attempt, delivery_id)
    if result.kind == "deferred":
        raise retry_budgeted(self, ctx)
    return result.as_dict()


def _fail_closed(
    task: Task, ctx: GateContext, raw: Any, exc: BaseException, attempt: int, message_id: str
) -> dict[str, Any]:
    """The crashed gate's last word; if even that cannot be sent, keep the message."""
    try:
        return fail_closed_after_crash(
            raw, ctx, exc, attempt=attempt, answer=Answer.of(message_id)
        ).as_dict()
    except EventDeliveryError as undelivered:
        logger.error("task %s: fail-closed advance not delivered: %s", message_id, undelivered)
        raise retry_undelivered(task, ctx, undelivered) from undelivered
