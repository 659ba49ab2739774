"""What the gate is given in a worker process: its context, built once from the
environment, the dispatch of shards as a chord, and the retry of an undelivered event.

Both task modules import this one and neither imports the other: shards are sent by
task name (`worker.names`), as the orchestrator sends jobs.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, chord, group
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from worker import names
from worker.celery_adapter.app import app
from worker.contracts import load_contracts
from worker.errors import ContractsFileError, EventDeliveryError, StateUnavailable
from worker.job import Job
from worker.notify.alerts import send_alert
from worker.notify.events import make_sender
from worker.pipeline.runner import GateContext
from worker.settings import load_settings
from worker.shards.protocol import Deal
from worker.shards.queue import ShardQueue
from worker.state import RedisState

logger = logging.getLogger("testgate.tasks")

_context: GateContext | None = None


def configure(context: GateContext | None) -> None:
    """Install the context jobs run with (the embedded mode and tests); None resets."""
    global _context  # noqa: PLW0603 - one context per worker process, built once
    _context = context


def current_context() -> GateContext:
    """The worker's context, built from the environment on first use."""
    global _context  # noqa: PLW0603
    if _context is None:
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
            shards=CelerySharding(
                ShardQueue.from_url(settings.state_redis_url, settings.key_prefix)
            ),
        )
    return _context


class CelerySharding:
    """Dispatches a deal as a chord on the `tests` queue: one task per shard, each
    pulling from the deal's queue, and the merge as the callback."""

    def __init__(self, queue: ShardQueue) -> None:
        self.queue = queue

    def dispatch(self, job: Job, deal: Deal) -> None:
        raw = job.model_dump()
        header = group(
            app.signature(
                names.RUN_TEST_SHARD, args=(raw, deal.commit, i, deal.deal_id), immutable=True
            ).set(queue=names.TESTS_QUEUE)
            for i in range(deal.shards)
        )
        callback = app.signature(names.MERGE_TEST_SHARDS, args=(raw, deal.model_dump_json())).set(
            queue=names.TESTS_QUEUE
        )
        # A chord whose header or merge fails still ends in one FAIL advance.
        callback = callback.on_error(app.signature(names.SHARDS_FAILED))
        try:
            chord(header)(callback)
        except (OperationalError, OSError) as exc:
            raise EventDeliveryError(f"shards of task {job.task_id} not sent: {exc}") from exc
        logger.info("task %s: %s", job.task_id, deal.describe())


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


def retry_budgeted(task: Task, ctx: GateContext, exc: Exception | None = None) -> BaseException:
    """What to raise to try the job again later, within TESTGATE_INFRA_MAX_RETRIES."""
    max_retries = ctx.settings.infra_max_retries
    return retry_or_requeue(
        task, countdown=ctx.settings.infra_retry_delay_s, max_retries=max_retries, exc=exc
    )


def retry_undelivered(
    task: Task, ctx: GateContext, exc: EventDeliveryError | StateUnavailable
) -> BaseException:
    """What to raise when a verdict exists but the orchestrator has not heard it, or the
    answer guard it needs is unavailable: the job must be delivered again rather than
    acked and lost (no budget: it is not the job's fault)."""
    return retry_or_requeue(
        task, countdown=ctx.settings.infra_retry_delay_s, max_retries=None, exc=exc
    )
