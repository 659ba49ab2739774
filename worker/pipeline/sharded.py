"""A sharded job's two halves, callable without a broker: run one shard (in a worktree
of its own at the job's commit, the batches it pulls from the job's shard queue, each
as one pytest run), and merge every shard's result into one verdict, one report and
one advance.

Both reuse the job pipeline (checkout, sandbox, setup, report, announce), so a shard
is tested exactly as a whole suite would be, and the merged run is judged by the same
decision (`outcome.code_outcome`).
"""

from __future__ import annotations

import logging
import time

from worker.errors import CheckoutError, StateUnavailable
from worker.git.checkout import Checkout
from worker.job import Job, JobRejected
from worker.observe.phases import JobPhases
from worker.pipeline.announce import Answer, hand_back
from worker.pipeline.context import GateContext, GateResult
from worker.pipeline.failed_first import still_failing
from worker.pipeline.job_run import JobRun
from worker.pipeline.outcome import code_outcome, tool_error
from worker.pipeline.runner import exclusively
from worker.pipeline.suite_step import suite_attributes, why_not_run
from worker.pipeline.workspace import open_checkout, prepared
from worker.shards.merge import Merged, merge, shard_result
from worker.shards.protocol import Batch, Deal, ShardResult
from worker.shards.queue import ShardQueue
from worker.suite.run import SuiteRun, run_suite
from worker.suite.setup import SetupFailure

logger = logging.getLogger("testgate.sharded")


def run_shard(
    job: Job,
    commit: str,
    index: int,
    deal_id: str,
    ctx: GateContext,
    *,
    attempt: int,
    delivery_id: str,
    queued_s: float | None = None,
) -> ShardResult:
    """Pull batches from the deal `deal_id` and run each at `commit` until none is
    left; never raises. Every batch this shard pulled on an earlier start is dealt
    again first: its results died with that start. `ran` is False when a batch produced
    no exit code (checkout, setup, spawn, timeout); `final` when retrying cannot help."""
    phases = JobPhases(ctx.state)
    with phases.job("testgate.shard", attempt=attempt, shard=index + 1, deal=deal_id):
        phases.describe(job)
        if queued_s is not None:
            phases.waited(queued_s)
        result = _run_shard(job, commit, index, deal_id, ctx, attempt, delivery_id, phases)
        phases.conclude("shard-ran" if result.ran else "shard-not-run")
    return result


def _run_shard(
    job: Job,
    commit: str,
    index: int,
    deal_id: str,
    ctx: GateContext,
    attempt: int,
    delivery_id: str,
    phases: JobPhases,
) -> ShardResult:
    contract = ctx.contracts.for_repo(job.repo) if ctx.contracts else None
    if ctx.shards is None or contract is None:
        why = "no shard queue" if contract else "no test contract"
        return ShardResult(index=index, ran=False, problem=why, final=True)
    at_commit = job.model_copy(update={"commit": commit})
    run = JobRun(at_commit, contract, ctx, attempt, delivery_id, phases=phases)
    # Each start of this attempt counts: past the delivery budget the process running
    # it died each time, and running it again would loop forever.
    starts = ctx.state.count_delivery(f"{delivery_id}:{attempt}")
    if starts > ctx.settings.max_deliveries:
        why = f"the process running it died {starts - 1} times"
        return ShardResult(index=index, ran=False, problem=why, attempts=attempt + 1, final=True)
    queue = ctx.shards.queue
    try:
        if back := queue.take_back(deal_id, index):
            logger.warning(
                "task %s shard %d started again: its %d earlier batch(es) dealt again",
                job.task_id,
                index + 1,
                back,
            )
        with open_checkout(run) as co:
            result = _pull_and_run(run, co, queue, deal_id, index)
    except CheckoutError as exc:
        result = f"checkout failed: {exc}"
    except StateUnavailable as exc:
        result = f"the shard queue is unavailable: {exc}"
    if isinstance(result, ShardResult):
        return result
    logger.warning("task %s shard %d did not run: %s", job.task_id, index + 1, result)
    return ShardResult(index=index, ran=False, problem=result, attempts=attempt + 1)


def _pull_and_run(
    run: JobRun, co: Checkout, queue: ShardQueue, deal_id: str, index: int
) -> ShardResult | str:
    """The shard's result, or why it did not run. Its batches share the contract's
    timeout; with stop_after_failures, no shard pulls once that many tests failed."""
    contract = run.contract
    stop = contract.stop_after_failures
    with prepared(run, co) as ready:
        if isinstance(ready, SetupFailure):
            return ready.describe()
        sandbox, python, _ = ready
        deadline = time.monotonic() + contract.timeout_s
        runs: list[tuple[Batch, SuiteRun]] = []
        while not (stop and queue.add_failures(deal_id, 0) >= stop):
            batch = queue.claim(deal_id, index)
            if batch is None:
                break
            with run.phases.phase("suite", batch=batch.number + 1) as span:
                suite = run_suite(
                    co.path,
                    sandbox,
                    python=python,
                    target=contract.target,
                    timeout_s=max(deadline - time.monotonic(), 0.1),
                    tail_bytes=run.settings.output_tail_bytes,
                    select=batch.test_ids,
                    maxfail=stop,
                )
                span.set_attributes(suite_attributes(suite))
            if not suite.ran:
                return why_not_run(run, suite)
            runs.append((batch, suite))
            failed = sum(1 for o in suite.outcomes if o.outcome in ("failed", "error"))
            if stop and failed:
                queue.add_failures(deal_id, failed)
    logger.info(
        "task %s shard %d ran %d batch(es): %s",
        run.job.task_id,
        index + 1,
        len(runs),
        ", ".join(str(b.number + 1) for b, _ in runs) or "none left",
    )
    return shard_result(index, runs, attempts=run.attempt + 1)


def finish_sharded(
    job: Job,
    deal: Deal,
    shards: list[ShardResult],
    ctx: GateContext,
    *,
    delivery_id: str,
    failure: str = "",
    queued_s: float | None = None,
) -> GateResult:
    """Merge, report and announce once. Raises only EventDeliveryError (and
    StateUnavailable: the caller keeps the message). `failure`: the chord itself failed
    (its error path), so the job fails closed with that reason."""
    phases = JobPhases(ctx.state)
    attempt = max((s.attempts for s in shards), default=1) - 1
    with phases.job("testgate.merge", attempt=attempt, shards=deal.shards):
        phases.describe(job)
        if queued_s is not None:
            phases.waited(queued_s)
        result = _finish_sharded(job, deal, shards, ctx, delivery_id, phases, failure)
        phases.conclude(*result.outcome_and_verdict())
    return result


def _finish_sharded(
    job: Job,
    deal: Deal,
    shards: list[ShardResult],
    ctx: GateContext,
    delivery_id: str,
    phases: JobPhases,
    failure: str,
) -> GateResult:
    contract = ctx.contracts.for_repo(job.repo) if ctx.contracts else None
    if contract is None:  # the contracts file changed while the shards ran
        rejection = JobRejected("no test contract", job.task_id, job.repo)
        return hand_back(rejection, ctx, Answer.of(delivery_id))
    merged = merge(deal, shards)
    ctx.state.record_durations(job.repo, merged.durations)
    if merged.suite is not None:
        previous = ctx.state.failing_tests(job.repo, job.branch)
        ctx.state.record_failing(job.repo, job.branch, still_failing(previous, merged.outcomes))
    if ctx.shards is not None:
        ctx.shards.queue.forget(deal.deal_id)
    attempts = max((s.attempts for s in shards), default=1)
    at_commit = job.model_copy(update={"commit": deal.commit})
    run = JobRun(at_commit, contract, ctx, attempts - 1, delivery_id, phases=phases)
    logger.info(
        "task %s: %d shards merged: %s",
        job.task_id,
        deal.shards,
        merged.not_run or merged.objection or "every batch reported",
    )
    if failure:
        return exclusively(run, lambda co: tool_error(run, failure, co, final=True))
    return exclusively(run, lambda co: _announce(run, co, merged, deal))


def _announce(run: JobRun, co: Checkout, merged: Merged, deal: Deal) -> GateResult:
    if merged.suite is None:
        return tool_error(run, f"not every shard ran: {merged.not_run}", co, final=True)
    return code_outcome(
        run, co, merged.suite, ran_first=deal.ran_first, shards_objection=merged.objection
    )
