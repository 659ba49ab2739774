"""Celery adapter of sharded runs: one task per shard and a chord callback that merges
them. The work itself is in `worker.pipeline.shard_merge`.

A shard that could not run is retried alone, under the same budget as a whole job
(TESTGATE_INFRA_MAX_RETRIES); once the budget is spent it reports "did not run", and
the merge fails the whole job closed. Shard tasks never raise anything else, so the
chord always reaches its callback.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task

from worker import names
from worker.celery_adapter.app import app
from worker.celery_adapter.runtime import current_context, retry_undelivered
from worker.errors import EventDeliveryError
from worker.job import JobRejected, parse_job
from worker.pipeline.shard_merge import finish_sharded, run_dealt_shard, run_shard
from worker.pipeline.shard_plan import ShardResult

logger = logging.getLogger("testgate.shard_tasks")

SHARD_TASK = names.RUN_TEST_SHARD
MERGE_TASK = names.MERGE_TEST_SHARDS


@app.task(bind=True, name=SHARD_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def run_test_shard(
    self: Task,
    raw_job: dict[str, Any],
    commit: str,
    index: int,
    test_ids: list[str],
    deal_id: str = "",
) -> dict[str, Any]:
    """One shard: the batches it pulls from the deal `deal_id`, or `test_ids` (a fixed
    plan, as sent before shards pulled)."""
    ctx = current_context()
    attempt = int(self.request.retries or 0)
    job = parse_job(raw_job)
    if isinstance(job, JobRejected):  # we built it ourselves: cannot happen, never raise
        return ShardResult(index, False, None, 0.0, problem=job.reason).to_json()
    delivery_id = str(self.request.id or uuid.uuid4())
    try:
        if deal_id:
            result = run_dealt_shard(
                job, commit, index, deal_id, ctx, attempt=attempt, delivery_id=delivery_id
            )
        else:
            result = run_shard(
                job, commit, index, test_ids, ctx, attempt=attempt, delivery_id=delivery_id
            )
    except Exception as exc:  # a shard must always reach the merge
        logger.exception("task %s shard %d: unexpected error", job.task_id, index + 1)
        result = ShardResult(index, False, None, 0.0, problem=f"the shard crashed: {exc!r}")
    if not result.ran and not result.final and attempt < ctx.settings.infra_max_retries:
        logger.warning(
            "task %s shard %d did not run (%s): retried in %ss",
            job.task_id,
            index + 1,
            result.problem,
            ctx.settings.infra_retry_delay_s,
        )
        raise self.retry(
            countdown=ctx.settings.infra_retry_delay_s, max_retries=ctx.settings.infra_max_retries
        )
    return result.to_json()


@app.task(bind=True, name=MERGE_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def merge_test_shards(
    self: Task,
    results: list[dict[str, Any]],
    raw_job: dict[str, Any],
    commit: str,
    plan: list[list[str]],
    shard_count: int = 0,
    ran_first: list[str] | None = None,
    deal_id: str = "",
) -> dict[str, Any]:
    """The chord's callback: `plan` is the fixed plan's lists, or the batches dealt to
    `shard_count` shards."""
    ctx = current_context()
    job = parse_job(raw_job)
    if isinstance(job, JobRejected):
        return {"kind": "handed-back", "detail": job.reason, "advance": None}
    shards = [ShardResult.from_json(r) for r in results]
    try:
        outcome = finish_sharded(
            job,
            commit,
            plan,
            shards,
            ctx,
            delivery_id=str(self.request.id or uuid.uuid4()),
            shard_count=shard_count,
            ran_first=tuple(ran_first or ()),
            deal_id=deal_id,
        )
    except EventDeliveryError as exc:
        logger.error("task %s: merged verdict not delivered, retried: %s", job.task_id, exc)
        raise retry_undelivered(self, ctx, exc) from exc
    return outcome.as_dict()
