"""Celery adapter of sharded runs: one task per shard and a chord callback that merges
them. The work itself is in `worker.pipeline.sharded`; what crosses the broker is
`worker.shards.protocol`'s models, as JSON.

A shard that could not run is retried alone, under the same budget as a whole job
(TESTGATE_INFRA_MAX_RETRIES); once the budget is spent it reports "did not run", and
the merge fails the whole job closed. Shard tasks never raise anything else, so the
chord normally reaches its callback; when it does not (a shard or the merge failed,
the callback could not be published), the chord's error path sends one task that fails
the job closed under the merge's own id, so merge and error path answer at most once.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from worker import names
from worker.celery_adapter.app import app
from worker.celery_adapter.runtime import current_context, retry_budgeted, retry_undelivered
from worker.celery_adapter.telemetry import queued_seconds
from worker.errors import EventDeliveryError, StateUnavailable
from worker.job import Job, JobRejected, parse_job
from worker.notify.events import publish_retry_policy
from worker.pipeline.sharded import finish_sharded, run_shard
from worker.settings import load_settings
from worker.shards.protocol import Deal, ShardResult

logger = logging.getLogger("testgate.shard_tasks")

SHARD_TASK = names.RUN_TEST_SHARD
MERGE_TASK = names.MERGE_TEST_SHARDS
CHORD_ERROR_TASK = names.SHARDS_FAILED
FAIL_SHARDED_TASK = names.FAIL_SHARDED_JOB


@app.task(bind=True, name=SHARD_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def run_test_shard(
    self: Task, raw_job: dict[str, Any], commit: str, index: int, deal_id: str
) -> str:
    """One shard: the batches it pulls from the deal `deal_id`; its ShardResult."""
    ctx = current_context()
    attempt = int(self.request.retries or 0)
    job = parse_job(raw_job)
    if isinstance(job, JobRejected):  # we built it ourselves: cannot happen, never raise
        return ShardResult(index=index, ran=False, problem=job.reason).model_dump_json()
    delivery_id = str(self.request.id or uuid.uuid4())
    try:
        result = run_shard(
            job,
            commit,
            index,
            deal_id,
            ctx,
            attempt=attempt,
            delivery_id=delivery_id,
            queued_s=queued_seconds(self.request),
        )
    except Exception as exc:  # a shard must always reach the merge
        logger.exception("task %s shard %d: unexpected error", job.task_id, index + 1)
        result = ShardResult(index=index, ran=False, problem=f"the shard crashed: {exc!r}")
    if not result.ran and not result.final and attempt < ctx.settings.infra_max_retries:
        logger.warning(
            "task %s shard %d did not run (%s): retried in %ss",
            job.task_id,
            index + 1,
            result.problem,
            ctx.settings.infra_retry_delay_s,
        )
        raise retry_budgeted(self, ctx)
    return result.model_dump_json()


@app.task(bind=True, name=MERGE_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def merge_test_shards(
    self: Task, results: list[str], raw_job: dict[str, Any], deal: str
) -> dict[str, Any]:
    """The chord's callback: every shard's result, and the deal they pulled from."""
    job = parse_job(raw_job)
    if isinstance(job, JobRejected):
        return {"kind": "handed-back", "detail": job.reason, "advance": None}
    # A result that does not validate is as good as none: its shard did not report.
    shards = [r for r in map(_shard_result, results) if r is not None]
    delivery_id = str(self.request.id or uuid.uuid4())
    return _finish(
        self, job, deal, shards, delivery_id=delivery_id, queued_s=queued_seconds(self.request)
    )


def _finish(
    task: Task,
    job: Job,
    deal: str,
    shards: list[ShardResult],
    *,
    delivery_id: str,
    failure: str = "",
    queued_s: float | None = None,
) -> dict[str, Any]:
    """finish_sharded; a verdict not delivered is retried. Without the lease and the
    answer guard the merge could announce twice: with the shared state unavailable the
    message is kept (retried, or requeued) until it is back, never acked."""
    ctx = current_context()
    try:
        outcome = finish_sharded(
            job,
            Deal.model_validate_json(deal),
            shards,
            ctx,
            delivery_id=delivery_id,
            failure=failure,
            queued_s=queued_s,
        )
    except (EventDeliveryError, StateUnavailable) as exc:
        logger.error("task %s: sharded verdict not delivered, retried: %s", job.task_id, exc)
        raise retry_undelivered(task, ctx, exc) from exc
    return outcome.as_dict()


def _shard_result(raw: object) -> ShardResult | None:
    try:
        return ShardResult.model_validate_json(raw if isinstance(raw, str) else "")
    except ValidationError as exc:
        logger.error("a shard's result is unreadable (its shard counts as not run): %s", exc)
        return None


@app.task(name=CHORD_ERROR_TASK)
def shards_failed(request: Any, exc: Any, traceback: Any) -> None:
    """The chord's error path (a new-style errback: Celery calls it in the process that
    saw the failure, with the failed merge's request). It only publishes the task that
    fails the job closed, which is acked late and retried like any other."""
    merge_id = str(request.id)
    raw_job, deal = list(request.args)[-2:]  # the merge's own arguments
    why = f"the sharded run failed before its merge could announce: {exc!r}"
    logger.error("sharded merge %s failed (%r): failing the job closed", merge_id, exc)
    try:
        fail_sharded_job.apply_async(
            (merge_id, raw_job, deal, why),
            queue=names.TESTS_QUEUE,
            retry=True,
            # Settings only: this runs inside another task's result handling.
            retry_policy=publish_retry_policy(load_settings().event_publish_retries),
        )
    except (OperationalError, OSError) as publish_error:
        logger.critical(
            "sharded merge %s failed and its fail-closed task was not sent either (%s): "
            "the job gets no verdict until it is sent again",
            merge_id,
            publish_error,
        )


@app.task(
    bind=True, name=FAIL_SHARDED_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=None
)
def fail_sharded_job(
    self: Task, merge_id: str, raw_job: dict[str, Any], deal: str, why: str
) -> dict[str, Any]:
    """One FAIL advance for a sharded job whose chord failed, answered as the merge (its
    id), so a merge that did announce and this path never both do."""
    job = parse_job(raw_job)
    if isinstance(job, JobRejected):  # we built it ourselves: cannot happen, never raise
        return {"kind": "handed-back", "detail": job.reason, "advance": None}
    return _finish(self, job, deal, [], delivery_id=merge_id, failure=why)
