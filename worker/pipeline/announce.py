"""Telling the orchestrator: the advance after a verdict, the hand-back of a job that
is not ours to run. Each goes out once per job; the done ledger remembers it."""

from __future__ import annotations

import logging
from typing import Any

from worker.errors import EventDeliveryError, StateUnavailable
from worker.job import Job, JobRejected, parse_job
from worker.notify.alerts import infra_exhausted_text
from worker.notify.events import Advance, HandBack
from worker.pipeline.context import GateContext, GateResult
from worker.report.publish import PublishResult
from worker.report.render import ReportFacts
from worker.verdict import infrastructure_fail

logger = logging.getLogger("testgate.announce")


def announce_verdict(
    job: Job, ctx: GateContext, facts: ReportFacts, published: PublishResult
) -> GateResult:
    verdict = facts.verdict
    advance = Advance(
        task_id=job.task_id,
        repo=job.repo,
        work_item_id=job.work_item_id,
        branch=job.branch,
        result=verdict.result,
        exit_code=facts.exit_code,
        smoke=facts.smoke_state,
        commit=facts.commit,
        report_path=job.report_path,
        report_pushed=published.pushed,
        outcome=verdict.outcome,
        failure_packet=facts.failure_packet,
    )
    try:
        ctx.events.send(ctx.settings.advance_task, advance.kwargs())
    except EventDeliveryError as exc:
        logger.error("advance for task %s not delivered: %s", job.task_id, exc)
        raise
    # Both the tested commit and the report commit now stand for "done": a redelivery
    # that finds the report commit as the branch tip must not advance again.
    done = [c for c in (facts.commit, published.report_commit) if c]
    try:
        ctx.state.mark_done(job.task_id, done)
    except StateUnavailable as exc:
        logger.error(
            "task %s advanced but not recorded as done (a redelivery could advance again): %s",
            job.task_id,
            exc,
        )
    return GateResult("advanced", f"{verdict.result}: {verdict.reason}", advance)


def hand_back(rejection: JobRejected, ctx: GateContext) -> GateResult:
    ctx.state.bump("handed_back")
    logger.warning(
        "job handed back (task %s, repo %r): %s",
        rejection.task_id,
        rejection.repo,
        rejection.reason,
    )
    handback = HandBack(task_id=rejection.task_id, repo=rejection.repo, reason=rejection.reason)
    try:
        ctx.events.send(ctx.settings.handback_task, handback.kwargs())
    except EventDeliveryError as exc:
        logger.error("hand-back for task %s not delivered: %s", rejection.task_id, exc)
        raise
    return GateResult("handed-back", rejection.reason)


def already_done(job: Job, ctx: GateContext, commit: str) -> GateResult:
    ctx.state.bump("redelivered")
    logger.warning(
        "task %s at %s was already tested and advanced; not advancing again", job.task_id, commit
    )
    return GateResult("already-done", f"task {job.task_id} at {commit} already advanced")


def fail_closed_after_crash(
    raw_job: Any, ctx: GateContext, exc: BaseException, *, attempt: int
) -> GateResult:
    """The gate itself crashed on every attempt: still end the job, closed.

    No report can be trusted here, so none is written; the orchestrator's gate finds
    no passing report and rolls back, and the alert says why.
    """
    job = parse_job(raw_job)
    if isinstance(job, JobRejected):
        return GateResult("handed-back", f"invalid job after a crash: {job.reason}")
    verdict = infrastructure_fail(f"the gate crashed: {exc!r}", attempt + 1)
    ctx.state.bump("fail")
    ctx.alert(infra_exhausted_text(job.work_item_id, job.repo, attempt + 1, repr(exc)))
    facts = ReportFacts(
        work_item_id=job.work_item_id,
        repo=job.repo,
        branch=job.branch,
        commit=job.commit,
        verdict=verdict,
        exit_code=None,
        smoke_state="skipped",
        smoke_detail="the gate crashed",
        command="",
        created_at=ctx.today(),
        attempts=attempt + 1,
    )
    nothing = PublishResult(False, False, None, "not written: the gate crashed")
    return announce_verdict(job, ctx, facts, nothing)
