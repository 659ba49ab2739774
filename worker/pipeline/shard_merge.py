"""A sharded job's two halves, callable without a broker: run one shard (in a worktree
of its own at the job's commit: the batches it pulls from the job's shard queue, each
as one pytest run, or the test ids of a fixed plan), and merge every shard's result
into one verdict, one report and one advance.

Both reuse the job pipeline (checkout, sandbox, setup, report, announce: the steps of
`worker.pipeline.runner`, in `workspace`, `suite_step` and `outcome`), so a shard is
tested exactly as a whole suite would be.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from worker.errors import CheckoutError, StateUnavailable
from worker.git.checkout import Checkout
from worker.job import Job, JobRejected
from worker.observe.phases import Attribute, JobPhases
from worker.pipeline.announce import Answer, hand_back
from worker.pipeline.context import GateContext, GateResult
from worker.pipeline.failed_first import still_failing
from worker.pipeline.job_run import JobRun
from worker.pipeline.outcome import code_outcome, tool_error
from worker.pipeline.runner import exclusively
from worker.pipeline.shard_deal import Batch, failures_in, shard_result
from worker.pipeline.shard_plan import Merged, ShardPlan, ShardResult, TestCase, merge_shards
from worker.pipeline.suite_step import prepare_and_run, suite_attributes, why_not_run
from worker.pipeline.workspace import open_checkout, prepared
from worker.shard_queue import ShardQueue
from worker.suite.run import SuiteRun, run_suite
from worker.suite.setup import SetupFailure
from worker.suite.tally import Tally

logger = logging.getLogger("testgate.sharded")


def run_shard(
    job: Job,
    commit: str,
    index: int,
    test_ids: list[str],
    ctx: GateContext,
    *,
    attempt: int,
    delivery_id: str,
    queued_s: float | None = None,
) -> ShardResult:
    """Run `test_ids` at `commit`; never raises. `ran` is False when pytest produced no
    exit code (checkout, setup, spawn, timeout); `final` when retrying cannot help."""
    return _timed_shard(
        job,
        ctx,
        queued_s,
        lambda phases: _run_shard(job, commit, index, test_ids, ctx, attempt, delivery_id, phases),
        attempt=attempt,
        shard=index + 1,
        tests=len(test_ids),
    )


def _timed_shard(
    job: Job,
    ctx: GateContext,
    queued_s: float | None,
    body: Callable[[JobPhases], ShardResult],
    *,
    attempt: int,
    **span: Attribute,
) -> ShardResult:
    """One shard's run as a span of its own, with its queue wait and outcome."""
    phases = JobPhases(ctx.state)
    with phases.job("testgate.shard", attempt=attempt, **span):
        phases.describe(job)
        if queued_s is not None:
            phases.waited(queued_s)
        result = body(phases)
        phases.conclude("shard-ran" if result.ran else "shard-not-run")
    return result


def _run_shard(
    job: Job,
    commit: str,
    index: int,
    test_ids: list[str],
    ctx: GateContext,
    attempt: int,
    delivery_id: str,
    phases: JobPhases,
) -> ShardResult:
    contract = ctx.contracts.for_repo(job.repo) if ctx.contracts else None
    if contract is None:
        return ShardResult(index, False, None, 0.0, problem="no test contract", final=True)
    at_commit = job.model_copy(update={"commit": commit})
    run = JobRun(
        at_commit, contract, ctx, attempt, delivery_id, select=tuple(test_ids), phases=phases
    )
    if (died := _died_past_budget(ctx, delivery_id, attempt, index)) is not None:
        return died
    try:
        with open_checkout(run) as co:
            suite = prepare_and_run(run, co)
    except CheckoutError as exc:
        logger.error("task %s shard %d: checkout failed: %s", job.task_id, index + 1, exc)
        return ShardResult(
            index, False, None, 0.0, problem=f"checkout failed: {exc}", attempts=attempt + 1
        )
    if isinstance(suite, SetupFailure):
        problem = suite.describe()
    elif isinstance(suite, ShardPlan):  # cannot happen with a selection; never loop
        problem = "a shard tried to shard itself"
    elif not suite.ran:
        problem = why_not_run(run, suite)
    else:
        cases = {o.test_id: TestCase(o.outcome, o.seconds) for o in suite.outcomes}
        return ShardResult(
            index,
            True,
            suite.exit_code,
            suite.duration_s,
            cases=cases,
            output_tail=suite.output_tail,
            attempts=attempt + 1,
            evidence=(
                (suite.evidence_objection(require_a_pass=False) or "")
                if suite.exit_code == 0
                else ""
            ),
            passed=suite.passed_tests,
        )
    logger.warning("task %s shard %d did not run: %s", job.task_id, index + 1, problem)
    return ShardResult(index, False, None, 0.0, problem=problem, attempts=attempt + 1)


def run_dealt_shard(
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
    """`_run_dealt_shard` timed as one shard's span and phases."""
    return _timed_shard(
        job,
        ctx,
        queued_s,
        lambda phases: _run_dealt_shard(
            job, commit, index, deal_id, ctx, attempt, delivery_id, phases
        ),
        attempt=attempt,
        shard=index + 1,
        deal=deal_id,
    )


def _run_dealt_shard(
    job: Job,
    commit: str,
    index: int,
    deal_id: str,
    ctx: GateContext,
    attempt: int,
    delivery_id: str,
    phases: JobPhases,
) -> ShardResult:
    """Pull batches from the deal `deal_id` and run each at `commit` until none is
    left; never raises. Every batch this shard pulled on an earlier start is dealt
    again first: its results died with that start. `ran` is False when a batch produced
    no exit code (checkout, setup, spawn, timeout); `final` when retrying cannot help."""
    contract = ctx.contracts.for_repo(job.repo) if ctx.contracts else None
    if contract is None:
        return ShardResult(index, False, None, 0.0, problem="no test contract", final=True)
    queue = ctx.shard_queue
    if queue is None:
        return ShardResult(index, False, None, 0.0, problem="no shard queue", final=True)
    at_commit = job.model_copy(update={"commit": commit})
    run = JobRun(at_commit, contract, ctx, attempt, delivery_id, select=(), phases=phases)
    if (died := _died_past_budget(ctx, delivery_id, attempt, index)) is not None:
        return died
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
    return ShardResult(index, False, None, 0.0, problem=result, attempts=attempt + 1)


def _died_past_budget(
    ctx: GateContext, delivery_id: str, attempt: int, index: int
) -> ShardResult | None:
    """Count this start of the shard's attempt; past the delivery budget the process
    running it died each time, and running it again would loop forever."""
    starts = ctx.state.count_delivery(f"{delivery_id}:{attempt}")
    if starts <= ctx.settings.max_deliveries:
        return None
    why = f"the process running it died {starts - 1} times"
    return ShardResult(index, False, None, 0.0, problem=why, attempts=attempt + 1, final=True)


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
            claimed = queue.claim(deal_id, index)
            if claimed is None:
                break
            batch = Batch(*claimed)
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
            if stop and (failed := failures_in(suite)):
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
    commit: str,
    plan: list[list[str]],
    shards: list[ShardResult],
    ctx: GateContext,
    *,
    delivery_id: str,
    failure: str = "",
    queued_s: float | None = None,
    shard_count: int = 0,
    ran_first: tuple[str, ...] = (),
    deal_id: str = "",
) -> GateResult:
    """Merge, report and announce once. `plan`: the fixed plan's lists, or the dealt
    batches of `shard_count` shards. Raises only EventDeliveryError (and
    StateUnavailable: the caller keeps the message). `failure`: the chord itself failed
    (its error path), so the job fails closed with that reason."""
    phases = JobPhases(ctx.state)
    attempt = max((s.attempts for s in shards), default=1) - 1
    count = shard_count or len(plan)
    with phases.job("testgate.merge", attempt=attempt, shards=count):
        phases.describe(job)
        if queued_s is not None:
            phases.waited(queued_s)
        result = _finish_sharded(
            job,
            commit,
            plan,
            shards,
            ctx,
            delivery_id,
            phases,
            failure=failure,
            count=count,
            ran_first=ran_first,
            deal_id=deal_id,
        )
        phases.conclude(*result.outcome_and_verdict())
    return result


def _finish_sharded(
    job: Job,
    commit: str,
    plan: list[list[str]],
    shards: list[ShardResult],
    ctx: GateContext,
    delivery_id: str,
    phases: JobPhases,
    *,
    failure: str,
    count: int,
    ran_first: tuple[str, ...],
    deal_id: str,
) -> GateResult:
    contract = ctx.contracts.for_repo(job.repo) if ctx.contracts else None
    if contract is None:  # the contracts file changed while the shards ran
        rejection = JobRejected("no test contract", job.task_id, job.repo)
        return hand_back(rejection, ctx, Answer.of(delivery_id))
    merged = merge_shards(plan, shards, count)
    ctx.state.record_durations(job.repo, merged.durations)
    if merged.verdict is not None:
        outcomes = {t: c.outcome for s in shards for t, c in s.cases.items()}
        previous = ctx.state.failing_tests(job.repo, job.branch)
        ctx.state.record_failing(job.repo, job.branch, still_failing(previous, outcomes))
    if deal_id and ctx.shard_queue is not None:
        ctx.shard_queue.forget(deal_id)
    attempts = max((s.attempts for s in shards), default=1)
    at_commit = job.model_copy(update={"commit": commit})
    run = JobRun(at_commit, contract, ctx, attempts - 1, delivery_id, phases=phases)
    run.ran_first = ran_first
    logger.info(
        "task %s: %d shards merged: %s",
        job.task_id,
        count,
        merged.verdict.reason if merged.verdict else merged.not_run,
    )
    if failure:
        return exclusively(run, lambda co: tool_error(run, failure, co, final=True))
    return exclusively(run, lambda co: _announce(run, co, merged, count))


def _announce(run: JobRun, co: Checkout, merged: Merged, shard_count: int) -> GateResult:
    if merged.verdict is None:
        return tool_error(run, f"not every shard ran: {merged.not_run}", co, final=True)
    suite = SuiteRun(
        command=("python", "-m", "pytest", run.contract.target, "-q", f"({shard_count} shards)"),
        exit_code=merged.exit_code,
        timed_out=False,
        spawn_error=None,
        duration_s=merged.wall_s,
        output_tail=merged.output_tail,
        output_bytes=len(merged.output_tail),
        tally=Tally(tests=merged.tests_total, failing=merged.failing + merged.missing, skipped=0),
    )
    return code_outcome(run, co, suite, verdict=merged.verdict)
