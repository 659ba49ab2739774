"""The suite step of a job: in its prepared sandbox, the suite (or, for a contract that
shards, the deal that splits it over shard tasks), then the opt-in second look."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from worker.containment.sandbox import Sandbox
from worker.contracts import HiddenTests
from worker.errors import CheckoutError
from worker.git.checkout import Checkout
from worker.pipeline.audit import NO_AUDIT, Audit, AuditJob, PytestEnv, audit_suite
from worker.pipeline.hidden import HIDDEN_DIR, HiddenRun, hidden_files, place_hidden
from worker.pipeline.job_run import JobRun
from worker.pipeline.trusted import (
    TrustedBase,
    TrustedRun,
    fresh_checkout,
    no_autoload,
    overlay,
    read_trusted_base,
)
from worker.pipeline.workspace import prepared
from worker.shards.deal import deal_batches, shard_count
from worker.shards.protocol import Deal
from worker.shards.queue import ShardQueue
from worker.suite.prepare import prepare_suite
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
    trusted: TrustedRun | None = None  # under trusted tests: the run that decides
    hidden: HiddenRun | None = None  # the hidden tests' run


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
        contract, base = run.contract, None
        options: tuple[str, ...] = ()
        if contract.trusted_tests or contract.hidden_tests is not None:
            with run.phases.phase("trusted files"):
                base = read_trusted_base(co, contract.target, contract.trusted_ref, run.settings)
                # One run serves both when the branch's own is the trusted one.
                if contract.trusted_tests and not base.changed:
                    options = overlay(co.path, base, contract.target)
                    sandbox = no_autoload(sandbox)
        suite = _suite(run, co.path, sandbox, python, options, first=first)
        # An uncontained warm interpreter serves any worktree of the same interpreter.
        again = _warm_as(raw, sandbox, python)
        trusted = hidden = None
        if base is not None and contract.trusted_tests:
            trusted = _trusted(run, co, again, base, suite)
        if base is not None and contract.hidden_tests is not None:
            hidden = _hidden(run, co, again, base, contract.hidden_tests)
        ran = {o.test_id for o in suite.outcomes}
        audit = audit_suite(AuditJob.of(co, run.contract, run.settings), suite, raw=raw)
        return SuiteRan(suite, tuple(t for t in first if t in ran), audit, trusted, hidden)


def _suite(
    run: JobRun,
    worktree: Path,
    sandbox: Sandbox,
    python: str,
    options: tuple[str, ...],
    *,
    first: tuple[str, ...] = (),
    phase: str = "suite",
    target: str | None = None,
) -> SuiteRun:
    with run.phases.phase(phase) as span:
        suite = run_suite(
            worktree,
            sandbox,
            python=python,
            target=target or run.contract.target,
            timeout_s=run.contract.timeout_s,
            tail_bytes=run.settings.output_tail_bytes,
            progress=run.progress if target is None else None,
            first=first,
            maxfail=run.contract.stop_after_failures,
            options=options,
        )
        span.set_attributes(suite_attributes(suite))
    return suite


def _trusted(
    run: JobRun, co: Checkout, raw: PytestEnv, base: TrustedBase, own: SuiteRun
) -> TrustedRun:
    """The run that decides: the branch's own, when it loaded only the trusted files;
    otherwise the trusted files over a fresh checkout of the commit, set up again."""
    if not base.changed:
        return TrustedRun(base, own, None, co.path.resolve())
    with fresh_checkout(co, run.settings) as fresh:
        sandbox, python = _set_up(run, fresh.path, raw, "trusted")
        options = overlay(fresh.path, base, run.contract.target)
        deciding = _suite(
            run, fresh.path, no_autoload(sandbox), python, options, phase="trusted suite"
        )
        return TrustedRun(base, deciding, own, fresh.path.resolve())


def _hidden(
    run: JobRun, co: Checkout, raw: PytestEnv, base: TrustedBase, hidden: HiddenTests
) -> HiddenRun:
    """The hidden tests over a fresh checkout of the commit with the trusted files."""
    files = hidden_files(hidden, run.settings)
    with fresh_checkout(co, run.settings) as fresh:
        sandbox, python = _set_up(run, fresh.path, raw, "hidden")
        options = overlay(fresh.path, base, run.contract.target)
        target = place_hidden(fresh.path, files, hidden)
        suite = _suite(
            run,
            fresh.path,
            no_autoload(sandbox),
            python,
            options,
            phase="hidden suite",
            target=target,
        )
        texts = {f"{HIDDEN_DIR}/{path}": content for path, (_, content) in files.items()}
        return HiddenRun(suite, {**base.texts, **texts}, fresh.path.resolve())


def _warm_as(raw: PytestEnv, sandbox: Sandbox, python: str) -> PytestEnv:
    if sandbox.view is not None or sandbox.warm is None or raw.python != python:
        return raw
    return replace(raw, sandbox=replace(raw.sandbox, warm=sandbox.warm))


def _set_up(run: JobRun, worktree: Path, raw: PytestEnv, label: str) -> tuple[Sandbox, str]:
    """A fresh checkout prepared as the contract says, in a scratch of its own; a
    setup that fails there is the infrastructure's (it passed for the job's own run)."""
    scratch = raw.sandbox.scratch_dir / label
    scratch.mkdir(parents=True, exist_ok=True)
    prepared = prepare_suite(
        worktree,
        replace(raw.sandbox, scratch_dir=scratch),
        run.contract,
        python=raw.python,
        venvs_root=run.settings.workdir_path / "venvs",
        tail_bytes=run.settings.output_tail_bytes,
    )
    if isinstance(prepared, SetupFailure):
        raise CheckoutError(f"setting up the {label} run failed: {prepared.describe()}")
    return prepared


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
