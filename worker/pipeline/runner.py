"""One tester job, start to finish: validate -> checkout -> suite -> smoke -> verdict
-> report -> advance (or hand-back, or defer). Callable without a broker.

Every step has one boundary that turns its failures into a defined outcome; the
only thing that leaves `run_gate` is a `GateResult` (or EventDeliveryError, when the
orchestrator could not be told).

This module holds the order of the steps; the steps are functions over one `JobRun`
(job_run.py): the delivery protocol (delivery.py), the checkout and the sandbox
(workspace.py), the suite or the deal of its shards (suite_step.py), and the verdict, report
and announce it ends in (outcome.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from worker.errors import CheckoutError, StateUnavailable
from worker.git.checkout import Checkout
from worker.job import JobRejected, parse_job
from worker.observe.phases import JobPhases
from worker.pipeline.announce import Answer, already_done, hand_back, send_once
from worker.pipeline.context import GateContext, GateResult
from worker.pipeline.delivery import under_lease
from worker.pipeline.failed_first import still_failing
from worker.pipeline.job_run import JobRun
from worker.pipeline.outcome import code_outcome, tool_error
from worker.pipeline.suite_step import SuiteRan, prepare_and_run, why_not_run
from worker.pipeline.workspace import open_checkout
from worker.scope import job_rejection
from worker.shards.protocol import Deal
from worker.suite.progress import Progress
from worker.suite.run import SuiteRun
from worker.suite.setup import SetupFailure

logger = logging.getLogger("testgate.runner")

__all__ = ["GateContext", "GateResult", "run_gate"]


def run_gate(
    raw_job: Any,
    ctx: GateContext,
    *,
    attempt: int,
    delivery_id: str,
    progress: Callable[[Progress], None] | None = None,
    queued_s: float | None = None,
) -> GateResult:
    """Run one delivery of a tester job to a defined outcome.

    Raises only EventDeliveryError: the outcome exists but the orchestrator could not
    be told, so the caller must keep the message rather than lose the job.
    """
    phases = JobPhases(ctx.state)
    with phases.job("testgate.job", attempt=attempt):
        if queued_s is not None:
            phases.waited(queued_s)
        result = _run_gate(raw_job, ctx, attempt, delivery_id, progress, phases)
        phases.conclude(*result.outcome_and_verdict())
    return result


def _run_gate(
    raw_job: Any,
    ctx: GateContext,
    attempt: int,
    delivery_id: str,
    progress: Callable[[Progress], None] | None,
    phases: JobPhases,
) -> GateResult:
    if attempt == 0:
        ctx.state.bump("runs")
    parsed = parse_job(raw_job)
    if isinstance(parsed, JobRejected):
        with phases.phase("announce"):
            return hand_back(parsed, ctx, Answer.of(delivery_id))
    phases.describe(parsed)
    rejection = job_rejection(parsed, ctx.settings, ctx.contracts)
    contract = ctx.contracts.for_repo(parsed.repo) if ctx.contracts else None
    if rejection is not None or contract is None:
        rejection = rejection or JobRejected("no test contract", parsed.task_id, parsed.repo)
        with phases.phase("announce"):
            return hand_back(rejection, ctx, Answer.of(delivery_id))
    run = JobRun(parsed, contract, ctx, attempt, delivery_id, progress, phases=phases)
    try:
        return exclusively(run)
    except StateUnavailable as exc:
        # Without the lease a second concurrent run cannot be ruled out: treat it as an
        # infrastructure fault of this delivery and try again later.
        return tool_error(run, f"shared state unavailable: {exc}", None)


def exclusively(run: JobRun, body: Callable[[Checkout], GateResult] | None = None) -> GateResult:
    """Run under the job's lock so two deliveries never test it at once: the whole
    pipeline, or `body` in the job's checkout (the merge of a sharded run)."""
    return under_lease(run, lambda: _in_checkout(run, body))


def _in_checkout(run: JobRun, body: Callable[[Checkout], GateResult] | None) -> GateResult:
    job = run.job
    try:
        with open_checkout(run) as co:
            if body is not None:
                return body(co)
            ran = prepare_and_run(run, co)
            if isinstance(ran, SetupFailure):
                return tool_error(run, ran.describe(), co)
            if isinstance(ran, Deal):
                deal = ran
            elif not ran.suite.ran:
                return tool_error(run, why_not_run(run, ran.suite), co, hang=ran.suite.hang)
            elif ran.trusted is not None and not ran.trusted.deciding.ran:
                deciding = ran.trusted.deciding
                why = f"the trusted tests {why_not_run(run, deciding)}"
                return tool_error(run, why, co, hang=deciding.hang)
            elif ran.hidden is not None and not ran.hidden.suite.ran:
                # Not where it hung: that would show a hidden test's name and code.
                return tool_error(run, f"the hidden tests {why_not_run(run, ran.hidden.suite)}", co)
            else:
                _record_durations(run, ran)
                _record_failing(run, ran.suite)
                return code_outcome(
                    run,
                    co,
                    ran.suite,
                    ran_first=ran.ran_first,
                    audit=ran.audit,
                    trusted=ran.trusted,
                    hidden=ran.hidden,
                )
    except CheckoutError as exc:
        logger.error(
            "checkout failed for task %s (%s@%s): %s", job.task_id, job.repo, job.branch, exc
        )
        return tool_error(run, f"checkout failed: {exc}", None)
    # Sent only now that the worktree is gone: the shards may need this pool
    # process (and its slot) too.
    shards = run.ctx.shards
    if shards is None:  # a deal is only made where it can be sent
        return tool_error(run, "the suite was split but no one can send its shards", None)
    # Sending the shards is this message's answer (the merge announces under its
    # own id): a redelivered parent must not start a second chord.
    what = f"shards of task {job.task_id}"
    if not send_once(run.ctx, run.answer, what, lambda: shards.dispatch(job, deal)):
        return already_done(job, run.ctx, run.delivery_id)
    return GateResult("sharded", deal.describe())


def _record_durations(run: JobRun, ran: SuiteRan) -> None:
    """A repo that shards learns its tests' durations from whole runs too: "auto"
    that chose one shard from a guess then sizes the next run from real times."""
    if run.contract.shards != 1:
        timed = {o.test_id: o.seconds for o in ran.suite.outcomes}
        run.ctx.state.record_durations(run.job.repo, timed)


def _record_failing(run: JobRun, suite: SuiteRun) -> None:
    """What failed on this run of the branch runs first on its next one; a test
    that failed before and did not run now (a stopped run) stays on the list."""
    previous = run.ctx.state.failing_tests(run.job.repo, run.job.branch)
    outcomes = {o.test_id: o.outcome for o in suite.outcomes}
    run.ctx.state.record_failing(run.job.repo, run.job.branch, still_failing(previous, outcomes))
