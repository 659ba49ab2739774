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
from worker.errors import ContractsFileError, EventDeliveryError
from worker.job import Job
from worker.notify.alerts import send_alert
from worker.notify.events import make_sender
from worker.pipeline.runner import GateContext
from worker.pipeline.shard_plan import ShardPlan
from worker.settings import load_settings
from worker.shard_queue import RedisShardQueue
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
            shards=CelerySharding(),
            shard_queue=RedisShardQueue.from_url(settings.state_redis_url, settings.key_prefix),
        )
    return _context


class CelerySharding:
    """Dispatches a split as a chord on the `tests` queue: one task per shard (with its
    test ids, or the deal it pulls from) and the merge as the callback."""

    def dispatch(self, job: Job, split: ShardPlan) -> None:
        raw = job.model_dump()
        plan = [list(ids) for ids in split.plan]
        shard_args: list[tuple[Any, ...]] = (
            [(raw, split.commit, i, [], split.deal_id) for i in range(split.shards)]
            if split.deal_id
            else [(raw, split.commit, i, ids) for i, ids in enumerate(plan)]
        )
        header = group(
            app.signature(names.RUN_TEST_SHARD, args=args, immutable=True).set(
                queue=names.TESTS_QUEUE
            )
            for args in shard_args
        )
        callback = app.signature(
            names.MERGE_TEST_SHARDS,
            args=(raw, split.commit, plan),
            kwargs=(
                {
                    "shard_count": split.shards,
                    "ran_first": list(split.ran_first),
                    "deal_id": split.deal_id,
                }
                if split.deal_id
                else {}
            ),
        ).set(queue=names.TESTS_QUEUE)
        # A chord whose header or merge fails still ends in one FAIL advance.
        callback = callback.on_error(app.signature(names.SHARDS_FAILED))
        try:
            chord(header)(callback)
        except (OperationalError, OSError) as exc:
            raise EventDeliveryError(f"shards of task {job.task_id} not sent: {exc}") from exc
        logger.info("task %s: %s", job.task_id, split.describe())


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
