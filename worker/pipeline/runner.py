"""One tester job, start to finish: validate -> checkout -> suite -> smoke -> verdict
-> report -> advance (or hand-back, or defer). Callable without a broker.

Every step has one boundary that turns its failures into a defined outcome; the
only thing that leaves `run_gate` is a `GateResult` (or EventDeliveryError, when the
orchestrator could not be told).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from worker.containment import proctree, subreaper
from worker.containment.cgroup import open_job_cgroup
from worker.containment.sandbox import Limits, Sandbox, warm_interpreter
from worker.containment.slot import Slot, pool_slot
from worker.containment.view import contained, contained_warm, suite_view
from worker.containment.warm import warm_process_pids
from worker.contracts import TestContract
from worker.errors import CheckoutError, StateUnavailable
from worker.git.checkout import Checkout, checkout, mirror_path
from worker.job import Job, JobRejected, parse_job
from worker.metrics import observe_suite_duration
from worker.notify.alerts import infra_exhausted_text
from worker.observe.phases import JobPhases
from worker.pipeline.announce import Answer, already_done, announce_verdict, hand_back, send_once
from worker.pipeline.audit import NO_AUDIT, AuditJob, PytestEnv, audit_suite
from worker.pipeline.context import GateContext, GateResult
from worker.pipeline.failed_first import still_failing
from worker.pipeline.lease import Answered, Busy, take_lease
from worker.pipeline.shard_deal import deal_batches
from worker.pipeline.shard_plan import ShardPlan, plan_shards, shard_count
from worker.report.publish import GitIdentity, PublishResult, publish_report
from worker.report.render import ReportFacts, render_report
from worker.scope import job_rejection
from worker.smoke import SmokeResult, run_smoke, skipped
from worker.suite.prepare import prepare_suite
from worker.suite.probe import Hang
from worker.suite.progress import Progress
from worker.suite.reruns import collect_ids
from worker.suite.run import SuiteRun, run_suite
from worker.suite.setup import SetupFailure
from worker.verdict import (
    Verdict,
    from_exit_code,
    infrastructure_fail,
    with_evidence,
    with_guard,
    with_smoke,
)

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
        with phases.phase("announce"):
            return hand_back(
                rejection or JobRejected("no test contract", parsed.task_id, parsed.repo),
                ctx,
                Answer.of(delivery_id),
            )
    run = JobRun(parsed, contract, ctx, attempt, delivery_id, progress, phases=phases)
    try:
        return run.exclusively()
    except StateUnavailable as exc:
        # Without the lease a second concurrent run cannot be ruled out: treat it as an
        # infrastructure fault of this delivery and try again later.
        return run.tool_error(f"shared state unavailable: {exc}", None)


class JobRun:
    """One delivery of one valid, in-scope job."""

    def __init__(
        self,
        job: Job,
        contract: TestContract,
        ctx: GateContext,
        attempt: int,
        delivery_id: str,
        progress: Callable[[Progress], None] | None = None,
        select: tuple[str, ...] | None = None,
        phases: JobPhases | None = None,
    ) -> None:
        self.phases = phases or JobPhases()  # where this delivery's time goes
        self.progress = progress
        self.select = select  # a shard's test ids; None for the whole suite
        self.job = job
        self.contract = contract
        self.ctx = ctx
        self.settings = ctx.settings
        self.attempt = attempt  # 0 for the first try, as Celery's request.retries
        self.started = time.monotonic()
        self.delivery_id = delivery_id  # the message (Celery task id), same on redelivery
        # This delivery's name in the lease and the answer guard: unique per delivery.
        self.answer = Answer.of(delivery_id)
        # Marks every process of the job; the same on a redelivery of the same message to
        # this host's workdir, so the redelivery can kill what a dead predecessor left
        # running, and never another workdir's (two fleets, or test runs, on one host).
        marker = f"{self.settings.workdir_path}\0{delivery_id}"
        self.cookie = hashlib.sha256(marker.encode()).hexdigest()[:32]
        self.audit = NO_AUDIT  # the contract's opt-in second look, once the suite ran
        # Tests that failed on the branch's last run, run first this time (in the report).
        self.ran_first: tuple[str, ...] = ()
        self.redelivered = True  # until the delivery count says otherwise: sweep first
        self.slot: Slot | None = None  # where the open checkout lives, when in a slot

    @property
    def budget_spent(self) -> bool:
        return self.attempt >= self.settings.infra_max_retries

    def exclusively(self, body: Callable[[Checkout], GateResult] | None = None) -> GateResult:
        """Run under the job's lock so two deliveries never test it at once: the whole
        pipeline, or `body` in the job's checkout (the merge of a sharded run)."""
        job, state = self.job, self.ctx.state
        if state.answered(self.delivery_id):  # a redelivery of an answered message
            return already_done(job, self.ctx, self.delivery_id)
        # The request: the same task at the same commit (or branch) runs once at a time.
        lock_key = f"{job.task_id}:{job.commit or job.branch}"
        lease = take_lease(state, lock_key, self.answer.owner, self.settings.lease_s)
        if isinstance(lease, Answered):
            return already_done(job, self.ctx, self.delivery_id)
        if isinstance(lease, Busy):
            # A request that overlaps a running one coalesces into it. The running
            # message is acked only when it ends, so dropping this one loses nothing.
            state.bump("redelivered")
            logger.warning(
                "duplicate of task %s ignored: delivery %s is running it",
                job.task_id,
                lease.holder,
            )
            return GateResult("duplicate", f"delivery {lease.holder} is already running this job")
        try:
            # Every start of this attempt is counted: a start beyond the budget means
            # the process running it died each time (OOM killer, a suite that kills
            # its worker), and running it again would loop forever.
            starts = state.count_delivery(f"{self.delivery_id}:{self.attempt}")
            self.redelivered = starts > 1 or self.attempt > 0
            if starts > self.settings.max_deliveries:
                why = (
                    f"the process running it died {starts - 1} times (killed by the "
                    "OOM killer or by the suite itself)"
                )
                return self.tool_error(why, None, final=True)
            return self._in_checkout(body)
        finally:
            lease.stop()

    def _in_checkout(self, body: Callable[[Checkout], GateResult] | None) -> GateResult:
        job = self.job
        try:
            with self.open_checkout() as co:
                if body is not None:
                    return body(co)
                suite = self.prepare_and_run(co)
                if isinstance(suite, SetupFailure):
                    return self.tool_error(suite.describe(), co)
                if isinstance(suite, ShardPlan):
                    split = suite
                elif not suite.ran:
                    return self.tool_error(self.why_not_run(suite), co, hang=suite.hang)
                else:
                    self._record_durations(suite)
                    self._record_failing(suite)
                    return self.code_outcome(co, suite)
        except CheckoutError as exc:
            logger.error(
                "checkout failed for task %s (%s@%s): %s", job.task_id, job.repo, job.branch, exc
            )
            return self.tool_error(f"checkout failed: {exc}", None)
        # Sent only now that the worktree is gone: removing it waits for the mirror's
        # lock, which the shards' own checkouts take in turn, and the shards need this
        # pool process too.
        shards = self.ctx.shards
        if shards is None:  # a plan is only made where it can be sent
            return self.tool_error("the suite was split but no one can send its shards", None)
        # Sending the shards is this message's answer (the merge announces under its
        # own id): a redelivered parent must not start a second chord.
        what = f"shards of task {job.task_id}"
        if not send_once(self.ctx, self.answer, what, lambda: shards.dispatch(job, split)):
            return already_done(job, self.ctx, self.delivery_id)
        return GateResult("sharded", split.describe())

    def _record_durations(self, suite: SuiteRun) -> None:
        """A repo that shards learns its tests' durations from whole runs too: "auto"
        that chose one shard from a guess then sizes the next run from real times."""
        if self.contract.shards != 1 and self.select is None:
            timed = {o.test_id: o.seconds for o in suite.outcomes}
            self.ctx.state.record_durations(self.job.repo, timed)

    def _record_failing(self, suite: SuiteRun) -> None:
        """What failed on this run of the branch runs first on its next one; a test
        that failed before and did not run now (a stopped run) stays on the list."""
        previous = self.ctx.state.failing_tests(self.job.repo, self.job.branch)
        outcomes = {o.test_id: o.outcome for o in suite.outcomes}
        self.ctx.state.record_failing(
            self.job.repo, self.job.branch, still_failing(previous, outcomes)
        )

    @property
    def mirror_path(self) -> Path:
        return mirror_path(self.settings.workdir_path, self.job.repo)

    def open_checkout(self) -> AbstractContextManager[Checkout]:
        return self.phases.entered("checkout", self._checkout_in_slot())

    @contextmanager
    def _checkout_in_slot(self) -> Iterator[Checkout]:
        """The job's checkout; made in the pool process's slot when its suites may fork
        from a contained warm interpreter (worker/containment/slot.py), which is emptied
        after the worktree is gone."""
        with ExitStack() as stack:
            slot = None
            if self.settings.warm_pytest and contained(self.settings):
                slot = stack.enter_context(pool_slot(self.settings.workdir_path))
            co = stack.enter_context(
                checkout(
                    self.job.repo,
                    self.job.branch,
                    self.job.commit,
                    workdir=self.settings.workdir_path,
                    url_template=self.settings.git_url_template,
                    git_timeout_s=self.settings.git_timeout_s,
                    job_dir=slot.path if slot else None,
                )
            )
            self.slot = slot
            try:
                yield co
            finally:
                self.slot = None

    def prepare_and_run(self, co: Checkout) -> SuiteRun | SetupFailure | ShardPlan:
        """Setup steps, then the suite (or its shards), in one sandbox whose cookie is
        the job's."""
        with self.prepared(co) as prepared:
            if isinstance(prepared, SetupFailure):
                return prepared
            sandbox, python, raw = prepared
            if self.select is None and self.contract.shards != 1 and self.ctx.shards is not None:
                with self.phases.phase("collect"):
                    split = self._plan_shards(co, sandbox, python)
                if split is not None:
                    return split
            logger.info(
                "task %s: running pytest %s on %s@%s",
                self.job.task_id,
                self.contract.target,
                co.repo,
                co.commit,
            )
            if self.select is None:
                self.ran_first = tuple(self.ctx.state.failing_tests(self.job.repo, self.job.branch))
            with self.phases.phase("suite") as span:
                suite = run_suite(
                    co.path,
                    sandbox,
                    python=python,
                    target=self.contract.target,
                    timeout_s=self.contract.timeout_s,
                    tail_bytes=self.settings.output_tail_bytes,
                    progress=self.progress,
                    select=self.select,
                    first=self.ran_first,
                    maxfail=self.contract.stop_after_failures,
                )
                span.set_attributes(suite_attributes(suite))
            if self.select is not None:
                return suite  # a shard: the guard and classification need the whole suite
            ran = {o.test_id for o in suite.outcomes}
            self.ran_first = tuple(t for t in self.ran_first if t in ran)
            self.audit = audit_suite(
                AuditJob.of(co, self.contract, self.settings),
                suite,
                branch=PytestEnv(sandbox, python),
                raw=raw,
            )
            return suite

    @contextmanager
    def prepared(self, co: Checkout) -> Iterator[tuple[Sandbox, str, PytestEnv] | SetupFailure]:
        """The job's sandbox with the setup steps run in it (or why they failed): the
        sandbox, the suite's interpreter and the branch's raw pytest environment. Every
        process of the job is gone when the block ends."""
        scratch_root = self.settings.workdir_path / "scratch"
        scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="job-", dir=scratch_root))
        # Named by the cookie, so a redelivery finds (and empties) a dead delivery's group.
        cgroup = open_job_cgroup(f"job-{self.cookie[:16]}", self.settings.suite_max_pids)
        python = self.contract.python or self.settings.python or sys.executable
        view = suite_view(self.settings, self.contract, python, self.mirror_path)
        sandbox = Sandbox(
            scratch_dir=scratch,
            cookie=self.cookie,
            kill_grace_s=self.settings.kill_grace_s,
            tree_kill=self.settings.tree_kill,
            limits=Limits(
                max_memory_mb=self.settings.suite_max_memory_mb,
                max_file_mb=self.settings.suite_max_file_mb,
                max_processes=self.settings.suite_max_processes,
            ),
            extra_env=dict(self.contract.env),
            isolate_network=self.settings.suite_network_isolation,
            cgroup=cgroup,
            # Before the children snapshot below: it must not count as the job's leftover.
            # A contained suite's warm interpreter is chosen once its python is known.
            warm=warm_interpreter() if self.settings.warm_pytest and view is None else None,
            view=view,
            suite_dir=self.slot.suite if self.slot and view else None,
        )
        # A subreaper pool process adopts what the job daemonises: without a cgroup that
        # is how it is found; with one, its killed members must still be reaped.
        before = subreaper.children() if subreaper.is_subreaper() else None
        try:
            # Only a delivery that ran before can have left processes (same cookie).
            if self.redelivered and (left := proctree.sweep(sandbox.cookie)):
                logger.warning(
                    "killed %d process(es) of an earlier delivery of task %s",
                    left,
                    self.job.task_id,
                )
            raw = PytestEnv(sandbox, python)
            with self.phases.phase("setup", steps=len(self.contract.setup)):
                prepared = prepare_suite(
                    co.path,
                    sandbox,
                    self.contract,
                    python=python,
                    venvs_root=self.settings.workdir_path / "venvs",
                    tail_bytes=self.settings.output_tail_bytes,
                )
            if isinstance(prepared, SetupFailure):
                yield prepared
            else:
                sandbox, python = prepared
                if sandbox.view is not None and self.slot is not None:
                    warm = contained_warm(self.settings, sandbox.view, python, self.slot)
                    sandbox = replace(sandbox, warm=warm)
                yield sandbox, python, raw
        finally:
            if cgroup is not None:
                cgroup.remove()
            if before is not None:  # a warm interpreter started during the job is not its
                subreaper.reap_adopted(before | warm_process_pids())
            shutil.rmtree(scratch, ignore_errors=True)

    def _plan_shards(self, co: Checkout, sandbox: Sandbox, python: str) -> ShardPlan | None:
        """Split the suite into shard tasks when the contract asks for it and the worker
        can (a Celery worker; the embedded mode runs the suite whole). None: run whole."""
        shards_asked, dispatcher = self.contract.shards, self.ctx.shards
        if shards_asked == 1 or dispatcher is None:
            return None
        collected = collect_ids(
            co.path,
            sandbox,
            python=python,
            target=self.contract.target,
            timeout_s=self.contract.timeout_s,
            label="shards",
        )
        if not collected.complete or not collected.ids:
            # The whole suite then fails (or passes) on its own terms, as pytest says.
            logger.warning(
                "task %s: collection for shards %s; running the suite whole",
                self.job.task_id,
                collected.detail,
            )
            return None
        test_ids = sorted(collected.ids)
        durations = self.ctx.state.test_durations(self.job.repo)
        count = shard_count(shards_asked, test_ids, durations)
        if count <= 1:
            return None
        queue = self.ctx.shard_queue
        if queue is None:  # nowhere to deal from: a plan fixed now
            plan = plan_shards(test_ids, durations, count)
            return ShardPlan(co.commit, tuple(tuple(ids) for ids in plan))
        # Dealt as the shards ask: balanced without durations, failing tests first.
        first = tuple(self.ctx.state.failing_tests(self.job.repo, self.job.branch))
        batches = deal_batches(test_ids, durations, count, first)
        deal_id = uuid.uuid4().hex
        retries = self.settings.infra_max_retries + 2
        ttl_s = self.settings.required_visibility_timeout_s(self.contract.run_budget_s) * retries
        queue.deal(deal_id, batches, ttl_s)
        ran_first = tuple(t for t in first if t in collected.ids)
        return ShardPlan(co.commit, tuple(tuple(b) for b in batches), count, deal_id, ran_first)

    def why_not_run(self, suite: SuiteRun) -> str:
        if suite.timed_out:
            running = f" while running {suite.hang.test}" if suite.hang and suite.hang.test else ""
            return f"timed out after {self.contract.timeout_s}s and was killed{running}"
        return f"could not be started: {suite.spawn_error or 'no exit code'}"

    def code_outcome(
        self, co: Checkout, suite: SuiteRun, verdict: Verdict | None = None
    ) -> GateResult:
        """Level 1 of docs/contract.md §7: the suite ran, so its exit code decides (AND the smoke).
        `verdict` is the merged one of a sharded run, decided the same way."""
        suite_verdict = verdict or with_guard(
            with_evidence(from_exit_code(suite.exit_code), suite.evidence_objection()),
            self.audit.objection,
        )
        if suite_verdict.result == "FAIL":
            smoke = skipped("the suite did not pass")
        elif not self.contract.smoke_enabled:
            smoke = skipped("smoke disabled for this repo")
        else:
            with self.phases.phase("smoke") as span:
                smoke = run_smoke(self.contract.smoke_base_url, self.contract.smoke_checks)
                span.set_attribute("testgate.smoke", smoke.state)
        verdict = with_smoke(suite_verdict, smoke)
        observe_suite_duration(self.ctx.state, suite.duration_s)
        self.ctx.state.bump("pass" if verdict.result == "PASS" else "fail")
        junit = suite.junit
        facts = self._facts(verdict, co.commit, smoke, suite.exit_code)
        facts = replace(
            facts,
            duration_s=suite.duration_s,
            tests_total=junit.tests if junit else None,
            failing_tests=junit.failing if junit else (),
            output_tail=suite.output_tail,
            limit_notes=suite.limit_notes,
            ran_first=self.ran_first,
        )
        facts = self.audit.annotate(facts)
        published = self._publish(co, facts)
        self._log_verdict(verdict, suite.exit_code, smoke)
        with self.phases.phase("announce"):
            return announce_verdict(self.job, self.ctx, facts, published, self.answer)

    def tool_error(
        self, why: str, co: Checkout | None, *, final: bool = False, hang: Hang | None = None
    ) -> GateResult:
        """Level 2 of docs/contract.md §7: the suite never ran. Defer while budget remains."""
        job = self.job
        self.ctx.state.bump("tool_error")
        if not self.budget_spent and not final:
            self.ctx.state.bump("deferred")
            logger.warning(
                "task %s (%s): suite did not run (%s) -> deferred, attempt %d of %d, next in %ss",
                job.task_id,
                job.work_item_id,
                why,
                self.attempt + 1,
                self.settings.infra_max_retries + 1,
                self.settings.infra_retry_delay_s,
            )
            return GateResult("deferred", why)
        verdict = infrastructure_fail(why, self.attempt + 1)
        self.ctx.state.bump("fail")
        facts = self._facts(verdict, co.commit if co else job.commit, skipped(why), None)
        facts = replace(facts, hang=hang)
        published = self._publish_fail_closed(co, facts)
        self.ctx.alert(infra_exhausted_text(job.work_item_id, job.repo, self.attempt + 1, why))
        self._log_verdict(verdict, None, skipped(why))
        with self.phases.phase("announce"):
            return announce_verdict(job, self.ctx, facts, published, self.answer)

    def _facts(
        self, verdict: Verdict, commit: str | None, smoke: SmokeResult, exit_code: int | None
    ) -> ReportFacts:
        return ReportFacts(
            work_item_id=self.job.work_item_id,
            repo=self.job.repo,
            branch=self.job.branch,
            commit=commit,
            verdict=verdict,
            exit_code=exit_code,
            smoke_state=smoke.state,
            smoke_detail=smoke.detail,
            command=f"python -m pytest {self.contract.target} -q",
            created_at=self.ctx.today(),
            attempts=self.attempt + 1,
        )

    def _publish_fail_closed(self, co: Checkout | None, facts: ReportFacts) -> PublishResult:
        """The fail-closed report goes into the job's checkout; if there never was
        one, one more checkout is tried just for the report."""
        if co is not None:
            return self._publish(co, facts)
        try:
            with self.open_checkout() as fresh:
                return self._publish(fresh, facts)
        except CheckoutError as exc:
            logger.error("fail-closed report for task %s not written: %s", self.job.task_id, exc)
            return PublishResult(False, False, None, f"no checkout for the report: {exc}")

    def _publish(self, co: Checkout, facts: ReportFacts) -> PublishResult:
        identity = GitIdentity(
            name="test-runner",
            email=f"test-runner@{self.settings.git_email_domain}",
            home=self.settings.home_dir,
        )
        with self.phases.phase("report"):
            text = render_report(replace(facts, phases=self.phases.timings()))
        with self.phases.phase("push") as span:
            result = publish_report(
                co.mirror,
                co.commit,
                self.job.report_path,
                text,
                origin_url=co.origin_url,
                branch=self.job.branch,
                message=f"test: test gate {facts.verdict.result} for {self.job.work_item_id}",
                identity=identity,
                timeout_s=self.settings.git_timeout_s,
            )
            span.set_attribute("testgate.pushed", result.pushed)
        if not result.pushed:
            logger.error(
                "report for task %s not pushed to %s: %s",
                self.job.task_id,
                self.job.branch,
                result.detail,
            )
        return result

    def _log_verdict(self, verdict: Verdict, exit_code: int | None, smoke: SmokeResult) -> None:
        self.ctx.state.bump(f"outcome_{verdict.outcome}")
        logger.info(
            "verdict work_item=%s repo=%s exit_code=%s result=%s smoke=%s duration_s=%.1f "
            "outcome=%s",
            self.job.work_item_id,
            self.job.repo,
            exit_code,
            verdict.result,
            smoke.state,
            time.monotonic() - self.started,
            verdict.outcome,
        )


def suite_attributes(suite: SuiteRun) -> dict[str, str | int | bool]:
    """What a span may say about a suite: counts and codes the worker read, never its
    output or test ids."""
    found: dict[str, str | int | bool] = {"testgate.ran": suite.ran}
    if suite.exit_code is not None:
        found["testgate.exit_code"] = suite.exit_code
    if suite.timed_out:
        found["testgate.timed_out"] = True
    if suite.junit is not None:
        found["testgate.tests"] = suite.junit.tests
        found["testgate.tests_failing"] = len(suite.junit.failing)
        found["testgate.tests_skipped"] = suite.junit.skipped
    return found
