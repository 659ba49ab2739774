"""Celery adapter: the task the orchestrator sends by name. Short on purpose; the
job itself is `worker.runner.run_gate`."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from worker.alerts import send_alert
from worker.announce import Answer, fail_closed_after_crash
from worker.celery_app import app
from worker.contracts import ContractsFileError, load_contracts
from worker.events import EventDeliveryError, make_sender
from worker.runner import GateContext, run_gate
from worker.settings import load_settings
from worker.state import RedisState

logger = logging.getLogger("testgate.tasks")

TASK_NAME = "testgate.run_test_gate"
_context: GateContext | None = None


def configure(context: GateContext | None) -> None:
    """Install the context jobs run with (the embedded mode and tests); None resets."""
    global _context  # noqa: PLW0603 - one context per worker process, built once
    _context = context


def current_context() -> GateContext:
    """The worker's context, built from the environment on first use."""
    global _context  # noqa: PLW0603
    if _context is None:
        # Imported here: the shard tasks themselves import this module.
        from worker.shard_tasks import CelerySharding

        settings = load_settings()
        try:
            contracts = load_contracts(settings)
        except ContractsFileError as exc:
            logger.error("no contracts (every job is handed back): %s", exc)
            contracts = None
        _context = GateContext(
            settings=settings,
            contracts=contracts,
            state=RedisState.from_url(settings.state_redis_url, settings.key_prefix),
            events=make_sender(settings, app),
            alert=lambda text: send_alert(settings, text),
            shards=CelerySharding(),
        )
    return _context


def retry_or_requeue(task: Task, **retry_options: Any) -> BaseException:
    """The exception that defers this message: Celery's Retry once the retry message is
    published, or, when the broker cannot take it, a Reject that gives this message back.

    Task.retry turns a failed publish into Reject(requeue=False), which acks the message
    and loses the job; an outage that ends before the reject would make that final.
    Requeued instead, the same message (same id and retry count) comes back."""
    try:
        retry: BaseException = task.retry(throw=False, **retry_options)
    except Reject as exc:
        logger.error(
            "task %s: retry not published (%s); message given back to the broker",
            task.request.id,
            exc.reason,
        )
        requeued: BaseException = Reject(exc.reason, requeue=True)
        return requeued
    except (OperationalError, OSError) as publish_error:
        logger.error("task %s: retry not published (%s); requeued", task.request.id, publish_error)
        given_back: BaseException = Reject(str(publish_error), requeue=True)
        return given_back
    return retry


def retry_undelivered(task: Task, ctx: GateContext, exc: EventDeliveryError) -> BaseException:
    """What to raise when a verdict exists but the orchestrator has not heard it: the
    job must be delivered again rather than acked and lost (no budget: it is not the
    job's fault)."""
    return retry_or_requeue(
        task, countdown=ctx.settings.infra_retry_delay_s, max_retries=None, exc=exc
    )


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
        )
    except EventDeliveryError as exc:
        logger.error("task %s: event not delivered, job retried: %s", delivery_id, exc)
        raise retry_undelivered(self, ctx, exc) from exc
    except Exception as exc:
        logger.exception("task %s: unexpected error in the gate", delivery_id)
        if attempt < ctx.settings.infra_max_retries:
            raise retry_or_requeue(
                self,
                countdown=ctx.settings.infra_retry_delay_s,
                max_retries=ctx.settings.infra_max_retries,
                exc=exc,
            ) from exc
        return _fail_closed(self, ctx, raw, exc, attempt, delivery_id)
    if result.kind == "deferred":
        raise retry_or_requeue(
            self,
            countdown=ctx.settings.infra_retry_delay_s,
            max_retries=ctx.settings.infra_max_retries,
        )
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
