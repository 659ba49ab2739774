"""Telling the orchestrator: the advance after a verdict, the hand-back of a job that
is not ours to run. Each message (one Celery task id) is answered at most once: the
answer is claimed atomically in the shared state right before it is sent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.errors import EventDeliveryError, StateUnavailable
from worker.job import Job, JobRejected, parse_job
from worker.masking import configured_secrets, mask_payload
from worker.notify.alerts import infra_exhausted_text
from worker.notify.events import Advance, HandBack
from worker.pipeline.context import GateContext, GateResult
from worker.pipeline.lease import owner_for
from worker.report.publish import PublishResult
from worker.report.render import ReportFacts
from worker.verdict import infrastructure_fail

logger = logging.getLogger("testgate.announce")

# How long a claimed, not yet confirmed answer blocks other deliveries: longer than a
# send with all its retries (kombu's or the webhook's), so only a sender that died or
# lost Redis mid-send lets another delivery answer after it.
PENDING_ANSWER_S = 300


@dataclass(frozen=True)
class Answer:
    """Who answers: the message (one Celery task id) and this delivery of it."""

    message_id: str
    owner: str

    @classmethod
    def of(cls, message_id: str) -> Answer:
        return cls(message_id, owner_for(message_id))


def send_once(ctx: GateContext, answer: Answer, what: str, send: Callable[[], None]) -> bool:
    """Send this message's answer unless it was answered already; True if sent now.

    Raises EventDeliveryError when it cannot be sent now, the message must then be kept
    and delivered again: the send failed, the guard cannot be read, or another delivery
    of the same message is sending at this moment (its outcome decides the next try).
    """
    try:
        claim = ctx.state.claim_answer(answer.message_id, answer.owner, PENDING_ANSWER_S)
    except StateUnavailable as exc:
        raise EventDeliveryError(f"{what}: the answer guard is unavailable: {exc}") from exc
    if claim == "answered":
        logger.warning("%s not sent: message %s was answered already", what, answer.message_id)
        return False
    if claim == "pending":
        raise EventDeliveryError(f"{what}: another delivery of {answer.message_id} is sending")
    try:
        send()
    except EventDeliveryError:
        ctx.state.release_answer(answer.message_id, answer.owner)
        raise
    ctx.state.confirm_answer(answer.message_id, answer.owner)
    return True


def announce_verdict(
    job: Job, ctx: GateContext, facts: ReportFacts, published: PublishResult, answer: Answer
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
    what = f"advance for task {job.task_id}"
    if not _send(ctx, answer, what, ctx.settings.advance_task, advance.kwargs()):
        return already_done(job, ctx, answer.message_id)
    return GateResult("advanced", f"{verdict.result}: {verdict.reason}", advance)


def hand_back(rejection: JobRejected, ctx: GateContext, answer: Answer) -> GateResult:
    ctx.state.bump("handed_back")
    logger.warning(
        "job handed back (task %s, repo %r): %s",
        rejection.task_id,
        rejection.repo,
        rejection.reason,
    )
    handback = HandBack(task_id=rejection.task_id, repo=rejection.repo, reason=rejection.reason)
    what = f"hand-back for task {rejection.task_id}"
    _send(ctx, answer, what, ctx.settings.handback_task, handback.kwargs())
    return GateResult("handed-back", rejection.reason)


def _send(
    ctx: GateContext, answer: Answer, what: str, task_name: str, kwargs: dict[str, Any]
) -> bool:
    """Every event leaves through here, once per message (send_once): its texts masked
    (a reason or failure packet may quote what a suite printed)."""
    masked = mask_payload(kwargs, configured_secrets(ctx.settings))
    try:
        return send_once(ctx, answer, what, lambda: ctx.events.send(task_name, masked))
    except EventDeliveryError as exc:
        logger.error("%s not delivered: %s", what, exc)
        raise


def already_done(job: Job, ctx: GateContext, message_id: str) -> GateResult:
    """A redelivery of a message that was answered: it answers nothing. (A new message
    for the same task and commit is a new request and is not this.)"""
    ctx.state.bump("redelivered")
    logger.warning(
        "message %s (task %s) was answered already; not answering again", message_id, job.task_id
    )
    return GateResult("already-done", f"message {message_id} of task {job.task_id} answered")


def fail_closed_after_crash(
    raw_job: Any, ctx: GateContext, exc: BaseException, *, attempt: int, answer: Answer
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
    return announce_verdict(job, ctx, facts, nothing, answer)
