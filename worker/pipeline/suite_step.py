"""The suite step of a job: in its prepared sandbox, the suite (or, for a contract that
shards, the deal that splits it over shard tasks), then the opt-in second look."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from worker.containment.sandbox import Sandbox
from worker.git.checkout import Checkout
from worker.pipeline.audit import NO_AUDIT, Audit, AuditJob, audit_suite
from worker.pipeline.job_run import JobRun
from worker.pipeline.workspace import prepared
from worker.shards.deal import deal_batches, shard_count
from worker.shards.protocol import Deal
from worker.shards.queue import ShardQueue
from worker.suite.reruns import collect_ids
from worker.suite.run import SuiteRun, run_suite
from worker.suite.setup import SetupFailure

logger = logging.getLogger("testgate.runner")


@dataclass(frozen=True)
class SuiteRan:
    """The whole suite's run and what the verdict and the report take from this step."""

    suite: SuiteRun
    ran_first: tuple[str, ...] = ()  # failed on the branch's last run, and ran first now
    audit: Audit = NO_AUDIT  # the contract's opt-in second look


def prepare_and_run(run: JobRun, co: Checkout) -> SuiteRan | SetupFailure | Deal:
    """Setup steps, then the suite (or the deal of its shards), in one sandbox whose
    cookie is the job's."""
    with prepared(run, co) as ready:
        if isinstance(ready, SetupFailure):
            return ready
        sandbox, python, raw = ready
        if run.contract.shards != 1 and run.ctx.shards is not None:
            with run.phases.phase("collect"):
                deal = _deal(run, co, sandbox, python, run.ctx.shards.queue)
            if deal is not None:
                return deal
        logger.info(
            "task %s: running pytest %s on %s@%s",
            run.job.task_id,
            run.contract.target,
            co.repo,
            co.commit,
        )
        first = tuple(run.ctx.state.failing_tests(run.job.repo, run.job.branch))
        with run.phases.phase("suite") as span:
            suite = run_suite(
                co.path,
                sandbox,
                python=python,
                target=run.contract.target,
                timeout_s=run.contract.timeout_s,
                tail_bytes=run.settings.output_tail_bytes,
                progress=run.progress,
                first=first,
                maxfail=run.contract.stop_after_failures,
            )
            span.set_attributes(suite_attributes(suite))
        ran = {o.test_id for o in suite.outcomes}
        audit = audit_suite(AuditJob.of(co, run.contract, run.settings), suite, raw=raw)
        return SuiteRan(suite, tuple(t for t in first if t in ran), audit)


def _deal(
    run: JobRun, co: Checkout, sandbox: Sandbox, python: str, queue: ShardQueue
) -> Deal | None:
    """Deal the suite's batches into the job's shard queue; called only when the
    contract asks for shards and the worker can send them (a Celery worker; the
    embedded mode runs the suite whole). None: run whole."""
    job, state, settings = run.job, run.ctx.state, run.settings
    collected = collect_ids(
        co.path,
        sandbox,
        python=python,
        target=run.contract.target,
        timeout_s=run.contract.timeout_s,
        label="shards",
    )
    if not collected.complete or not collected.ids:
        # The whole suite then fails (or passes) on its own terms, as pytest says.
        logger.warning(
            "task %s: collection for shards %s; running the suite whole",
            job.task_id,
            collected.detail,
        )
        return None
    test_ids = sorted(collected.ids)
    durations = state.test_durations(job.repo)
    count = shard_count(run.contract.shards, test_ids, durations)
    if count <= 1:
        return None
    # Dealt as the shards ask: balanced without durations, failing tests first.
    first = tuple(state.failing_tests(job.repo, job.branch))
    batches = deal_batches(test_ids, durations, count, first)
    deal_id = uuid.uuid4().hex
    retries = settings.infra_max_retries + 2
    ttl_s = settings.required_visibility_timeout_s(run.contract.run_budget_s) * retries
    queue.deal(deal_id, batches, ttl_s)
    ran_first = tuple(t for t in first if t in collected.ids)
    return Deal(
        commit=co.commit,
        deal_id=deal_id,
        shards=count,
        batches=tuple(tuple(b) for b in batches),
        ran_first=ran_first,
    )


def why_not_run(run: JobRun, suite: SuiteRun) -> str:
    if suite.timed_out:
        running = f" while running {suite.hang.test}" if suite.hang and suite.hang.test else ""
        return f"timed out after {run.contract.timeout_s}s and was killed{running}"
    return f"could not be started: {suite.spawn_error or 'no exit code'}"


def suite_attributes(suite: SuiteRun) -> dict[str, str | int | bool]:
    """What a span may say about a suite: counts and codes the worker read, never its
    output or test ids."""
    found: dict[str, str | int | bool] = {"testgate.ran": suite.ran}
    if suite.exit_code is not None:
        found["testgate.exit_code"] = suite.exit_code
    if suite.timed_out:
        found["testgate.timed_out"] = True
    if suite.tally.tests is not None:
        found["testgate.tests"] = suite.tally.tests
        found["testgate.tests_failing"] = len(suite.tally.failing)
        found["testgate.tests_skipped"] = suite.tally.skipped
    return found
