"""What a delivery ends in, once the suite ran or could not: the verdict (level 1 or 2
of docs/contract.md §7), its report on the branch, the verdict's log line and the
announce to the orchestrator."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from worker.errors import CheckoutError
from worker.evidence import listed_failing_objection, required_objection
from worker.git.checkout import Checkout
from worker.masking import configured_secrets, mask
from worker.metrics import observe_suite_duration
from worker.notify.alerts import infra_exhausted_text
from worker.pipeline.announce import announce_verdict
from worker.pipeline.audit import NO_AUDIT, Audit
from worker.pipeline.context import GateResult
from worker.pipeline.hidden import HIDDEN_DIR, HiddenRun
from worker.pipeline.job_run import JobRun
from worker.pipeline.trusted import TrustedRun
from worker.pipeline.workspace import open_checkout
from worker.report.publish import GitIdentity, PublishResult, publish_report
from worker.report.render import ReportFacts, render_report
from worker.review.trusted_files import hidden_objection, trusted_objections
from worker.smoke import SmokeResult, run_smoke, skipped
from worker.suite.probe import Hang
from worker.suite.run import SuiteRun
from worker.verdict import (
    Verdict,
    from_exit_code,
    infrastructure_fail,
    with_evidence,
    with_guard,
    with_smoke,
)

logger = logging.getLogger("testgate.runner")


def code_outcome(
    run: JobRun,
    co: Checkout,
    suite: SuiteRun,
    *,
    ran_first: tuple[str, ...] = (),
    audit: Audit = NO_AUDIT,
    shards_objection: str | None = None,
    trusted: TrustedRun | None = None,
    hidden: HiddenRun | None = None,
) -> GateResult:
    """Level 1 of docs/contract.md §7: the suite ran, so its exit code decides (AND the smoke).
    `suite` may be the merge of a sharded run, whose batches' records may object too.
    Under trusted tests the trusted run decides, and the branch's own can only object."""
    contract, state = run.contract, run.ctx.state
    deciding = trusted.deciding if trusted else suite
    suite_verdict = with_guard(
        with_evidence(
            from_exit_code(deciding.exit_code), shards_objection or deciding.evidence_objection()
        ),
        audit.objection,
    )
    passed = suite_verdict.result == "PASS"
    for objection in deciding_objections(run, deciding, passed, trusted, hidden):
        suite_verdict = with_guard(suite_verdict, objection)
    if suite_verdict.result == "FAIL":
        smoke = skipped("the suite did not pass")
    elif not contract.smoke_enabled:
        smoke = skipped("smoke disabled for this repo")
    else:
        with run.phases.phase("smoke") as span:
            smoke = run_smoke(contract.smoke_base_url, contract.smoke_checks)
            span.set_attribute("testgate.smoke", smoke.state)
    verdict = with_smoke(suite_verdict, smoke)
    observe_suite_duration(state, suite.duration_s)
    state.bump("pass" if verdict.result == "PASS" else "fail")
    facts = _facts(run, verdict, co.commit, smoke, deciding.exit_code)
    if trusted is not None:
        tests = f"the tests of {contract.trusted_ref} at {trusted.base.sha[:12]}"
        facts = replace(facts, command=f"{facts.command}, with {tests}")
    facts = replace(
        facts,
        duration_s=suite.duration_s,
        tests_total=deciding.tally.tests,
        failing_tests=tuple(dict.fromkeys((*deciding.tally.failing, *suite.tally.failing))),
        output_tail=deciding.output_tail,
        limit_notes=suite.limit_notes,
        ran_first=ran_first,
    )
    facts = audit.annotate(facts)
    published = _publish(run, co, facts)
    _log_verdict(run, verdict, suite.exit_code, smoke)
    with run.phases.phase("announce"):
        return announce_verdict(run.job, run.ctx, facts, published, run.answer)


def deciding_objections(
    run: JobRun,
    deciding: SuiteRun,
    passed: bool,
    trusted: TrustedRun | None,
    hidden: HiddenRun | None,
) -> list[str]:
    """What else a PASS needs of the run that decides: no failing test among its
    outcome lines, the required tests passed and, under trusted tests, no skip from
    outside the trusted files and a passing own run of the branch's."""
    found = [listed_failing_objection(deciding.tally.failing) if passed else None]
    if run.job.required_tests is not None:
        seen = {o.test_id: o.outcome for o in deciding.outcomes}
        found.append(required_objection(run.job.required_tests, seen))
    if trusted is not None:
        found += trusted_objections(deciding, trusted.own, str(trusted.root), trusted.base.texts)
    if hidden is not None:
        root, texts, report = str(hidden.root), hidden.texts, run.contract.hidden_report
        prefix = f"{HIDDEN_DIR}/"  # the ids the report shows are the hidden repo's own
        found.append(hidden_objection(hidden.suite, root, texts, prefix=prefix, report=report))
    return [f for f in found if f is not None]


def tool_error(
    run: JobRun, why: str, co: Checkout | None, *, final: bool = False, hang: Hang | None = None
) -> GateResult:
    """Level 2 of docs/contract.md §7: the suite never ran. Defer while budget remains."""
    job, state, settings = run.job, run.ctx.state, run.settings
    state.bump("tool_error")
    if not run.budget_spent and not final:
        state.bump("deferred")
        logger.warning(
            "task %s (%s): suite did not run (%s) -> deferred, attempt %d of %d, next in %ss",
            job.task_id,
            job.work_item_id,
            why,
            run.attempt + 1,
            settings.infra_max_retries + 1,
            settings.infra_retry_delay_s,
        )
        return GateResult("deferred", why)
    verdict = infrastructure_fail(why, run.attempt + 1)
    state.bump("fail")
    facts = _facts(run, verdict, co.commit if co else job.commit, skipped(why), None)
    facts = replace(facts, hang=hang)
    published = _publish_fail_closed(run, co, facts)
    run.ctx.alert(infra_exhausted_text(job.work_item_id, job.repo, run.attempt + 1, why))
    _log_verdict(run, verdict, None, skipped(why))
    with run.phases.phase("announce"):
        return announce_verdict(job, run.ctx, facts, published, run.answer)


def _facts(
    run: JobRun, verdict: Verdict, commit: str | None, smoke: SmokeResult, exit_code: int | None
) -> ReportFacts:
    return ReportFacts(
        work_item_id=run.job.work_item_id,
        repo=run.job.repo,
        branch=run.job.branch,
        commit=commit,
        verdict=verdict,
        exit_code=exit_code,
        smoke_state=smoke.state,
        smoke_detail=smoke.detail,
        command=f"python -m pytest {run.contract.target} -q",
        created_at=run.ctx.today(),
        attempts=run.attempt + 1,
    )


def _publish_fail_closed(run: JobRun, co: Checkout | None, facts: ReportFacts) -> PublishResult:
    """The fail-closed report goes into the job's checkout; if there never was
    one, one more checkout is tried just for the report."""
    if co is not None:
        return _publish(run, co, facts)
    try:
        with open_checkout(run) as fresh:
            return _publish(run, fresh, facts)
    except CheckoutError as exc:
        logger.error("fail-closed report for task %s not written: %s", run.job.task_id, exc)
        return PublishResult(False, False, None, f"no checkout for the report: {exc}")


def _publish(run: JobRun, co: Checkout, facts: ReportFacts) -> PublishResult:
    job, settings = run.job, run.settings
    identity = GitIdentity(
        name="test-runner", email=f"test-runner@{settings.git_email_domain}", home=settings.home_dir
    )
    with run.phases.phase("report"):
        report = render_report(replace(facts, phases=run.phases.timings()))
        text = mask(report, configured_secrets(settings))
    with run.phases.phase("push") as span:
        result = publish_report(
            co.mirror,
            co.commit,
            job.report_path,
            text,
            origin=co.origin,
            object_format=co.object_format,
            branch=job.branch,
            message=f"test: test gate {facts.verdict.result} for {job.work_item_id}",
            identity=identity,
            timeout_s=settings.git_timeout_s,
        )
        span.set_attribute("testgate.pushed", result.pushed)
    if not result.pushed:
        logger.error(
            "report for task %s not pushed to %s: %s", job.task_id, job.branch, result.detail
        )
    return result


def _log_verdict(run: JobRun, verdict: Verdict, exit_code: int | None, smoke: SmokeResult) -> None:
    run.ctx.state.bump(f"outcome_{verdict.outcome}")
    logger.info(
        "verdict work_item=%s repo=%s exit_code=%s result=%s smoke=%s duration_s=%.1f outcome=%s",
        run.job.work_item_id,
        run.job.repo,
        exit_code,
        verdict.result,
        smoke.state,
        time.monotonic() - run.started,
        verdict.outcome,
    )
