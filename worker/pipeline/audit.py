"""A contract's opt-in second look at a suite that ran: the test-integrity guard
(`integrity = true`) and the classification of failures (`classify = true`).

Both compare the tested commit with its merge base on main. Neither trusts the
worktree the suite ran in, which the suite could have rewritten (a test file brought
back, `.git` replaced by garbage or by a repository of its own): each side is re-run
and collected in a fresh worktree of the mirror, set up again in a fresh scratch, and
the diff and the files' text are read from the mirror's objects (worker/git/committed.py).
All their pytest runs share one budget: the contract's timeout again. What cannot be
done is reported, never raised; only the branch's own inability to be checked fails
it (fail closed), and a checkout that cannot be made is the infrastructure's (retried).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from worker.containment.sandbox import Sandbox
from worker.contracts import TestContract
from worker.errors import CheckoutError, GitError
from worker.git.checkout import Checkout, checkout, merge_base
from worker.git.committed import committed_diff, committed_texts
from worker.git.diff import parse_diff
from worker.git.isolated import IsolatedGit
from worker.report.render import ReportFacts
from worker.review.classify import Classified, classify
from worker.review.integrity import Integrity, IntegrityInput, check_integrity
from worker.review.packet import failing_tests, failure_packet
from worker.review.pysource import split_id
from worker.settings import Settings
from worker.suite.prepare import prepare_suite
from worker.suite.probe import TestOutcome
from worker.suite.reruns import Collection, collect_ids, rerun_ids
from worker.suite.run import SuiteRun
from worker.suite.setup import SetupFailure

logger = logging.getLogger("testgate.audit")

BASE_BRANCH = "main"
# The files the guard reads: tests and sources (.py) and pytest's configuration.
_DIFF_PATHS = ("*.py", "*.ini", "*.cfg", "*.toml")
_DIFF_OPTIONS = ("-M", "--unified=0", "--no-color", "--no-ext-diff", "--no-textconv")
_MAX_SOURCE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PytestEnv:
    """How pytest is started: the sandbox and the interpreter."""

    sandbox: Sandbox
    python: str


@dataclass(frozen=True)
class AuditJob:
    checkout: Checkout
    contract: TestContract
    workdir: Path
    url_template: str
    git_timeout_s: float
    tail_bytes: int = 4096

    @classmethod
    def of(cls, co: Checkout, contract: TestContract, settings: Settings) -> AuditJob:
        return cls(
            co,
            contract,
            settings.workdir_path,
            settings.git_url_template,
            settings.git_timeout_s,
            settings.output_tail_bytes,
        )


@dataclass(frozen=True)
class Audit:
    enabled: bool = False
    failing: tuple[TestOutcome, ...] = ()
    integrity: Integrity | None = None
    classified: tuple[Classified, ...] | None = None

    @property
    def objection(self) -> str | None:
        return self.integrity.objection if self.integrity else None

    def annotate(self, facts: ReportFacts) -> ReportFacts:
        """The report's facts with what the audit found; the packet only for a FAIL."""
        if not self.enabled:
            return facts
        packet: dict[str, Any] | None = None
        if facts.verdict.result == "FAIL":
            packet = failure_packet(self.failing, self.classified, self.integrity)
        return replace(
            facts, integrity=self.integrity, classified=self.classified or (), failure_packet=packet
        )


NO_AUDIT = Audit()


def audit_suite(job: AuditJob, suite: SuiteRun, *, raw: PytestEnv) -> Audit:
    """Audit a suite that ran. `raw` is the sandbox and interpreter before the
    contract's setup, to prepare each side's fresh checkout with."""
    contract = job.contract
    if not (contract.integrity or contract.classify) or not suite.ran:
        return NO_AUDIT
    failing = failing_tests(suite.outcomes)
    found = _Audit(job, raw, [t.test_id for t in failing]).run(suite.outcomes)
    classes = [c.failure_class for c in found.classified or ()]
    logger.info(
        "audit of %s@%s: objection=%s classes=%s",
        job.checkout.repo,
        job.checkout.commit,
        found.objection,
        {name: classes.count(name) for name in sorted(set(classes))},
    )
    return replace(found, failing=failing)


class _Audit:
    def __init__(self, job: AuditJob, raw: PytestEnv, failing: list[str]) -> None:
        self.job, self.raw, self.failing = job, raw, failing
        self.contract = job.contract
        self.deadline = time.monotonic() + job.contract.timeout_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, outcomes: Iterable[TestOutcome]) -> Audit:
        contract = self.contract
        classifying = contract.classify and bool(self.failing)
        # First, while it is still "right away": the flaky check on the branch.
        branch_rerun, branch_ids = self._branch_side(classifying)
        base = self._base_side(classifying, branch_ids, outcomes)
        integrity = base.integrity
        if branch_ids is not None and integrity is None:
            integrity = _incomplete(branch_ids, base.problem)
        classified = None
        if contract.classify:
            classified = classify(self.failing, branch_rerun, base.rerun, base_label=base.label)
        return Audit(enabled=True, integrity=integrity, classified=classified)

    def _branch_side(self, classifying: bool) -> tuple[dict[str, str] | None, Collection | None]:
        """The branch's rerun and collection, in a fresh checkout of the tested commit
        set up again: the suite ran in its own worktree and could have left anything
        there (a test file rewritten or brought back, `.git` replaced). A checkout that
        cannot be made is the infrastructure's fault (CheckoutError, retried)."""
        co, integrity = self.job.checkout, self.contract.integrity
        if not (classifying or integrity):
            return None, None
        with self._checkout_of(co.branch, co.commit) as fresh:
            env = self._prepare(fresh.path, "branch")
            if isinstance(env, str):
                logger.warning("audit of %s@%s: the branch again: %s", co.repo, co.commit, env)
                failed = Collection(frozenset(), False, f"a fresh checkout of it: {env}")
                return None, failed if integrity else None
            rerun = self._rerun(fresh.path, env, "branch") if classifying else None
            return rerun, self._collect(fresh.path, env, "branch") if integrity else None

    def _base_side(
        self, classifying: bool, branch_ids: Collection | None, outcomes: Iterable[TestOutcome]
    ) -> _BaseSide:
        co = self.job.checkout
        if not classifying and (branch_ids is None or not branch_ids.complete):
            return _BaseSide("main's merge base")  # nothing to compare on the base side
        try:
            sha = merge_base(co, BASE_BRANCH, git_timeout_s=self.job.git_timeout_s)
        except CheckoutError as exc:
            logger.warning("audit of %s@%s: no merge base: %s", co.repo, co.commit, exc)
            return _BaseSide("main's merge base", problem=f"no merge base with main: {exc}")
        label = f"main's merge base {sha[:10]}"
        try:
            with self._checkout_of(BASE_BRANCH, sha) as base:
                env = self._prepare(base.path, "base")
                if isinstance(env, str):
                    return _BaseSide(label, problem=f"{label}: {env}")
                rerun = self._rerun(base.path, env, "base") if classifying else None
                integrity = None
                if branch_ids is not None:
                    integrity = self._integrity(base, env, branch_ids, outcomes)
                return _BaseSide(label, rerun=rerun, integrity=integrity)
        except (CheckoutError, OSError) as exc:
            logger.warning("audit of %s@%s: %s unavailable: %s", co.repo, co.commit, label, exc)
            return _BaseSide(label, problem=f"{label} could not be checked out: {exc}")

    def _checkout_of(self, branch: str, sha: str) -> AbstractContextManager[Checkout]:
        return checkout(
            self.job.checkout.repo,
            branch,
            sha,
            workdir=self.job.workdir,
            url_template=self.job.url_template,
            git_timeout_s=self.job.git_timeout_s,
        )

    def _prepare(self, worktree: Path, side: str) -> PytestEnv | str:
        """A sandbox for `worktree`, set up as the contract says, in a fresh scratch."""
        scratch = self.raw.sandbox.scratch_dir / side
        scratch.mkdir(parents=True, exist_ok=True)
        sandbox = replace(self.raw.sandbox, scratch_dir=scratch)
        setup_s = max(1, min(self.contract.setup_timeout_s, int(self.left())))
        prepared = prepare_suite(
            worktree,
            sandbox,
            replace(self.contract, setup_timeout_s=setup_s),
            python=self.raw.python,
            venvs_root=self.job.workdir / "venvs",
            tail_bytes=self.job.tail_bytes,
        )
        if isinstance(prepared, SetupFailure):
            return f"preparing it failed: {prepared.describe()}"
        return PytestEnv(*prepared)

    def _rerun(self, worktree: Path, env: PytestEnv, label: str) -> dict[str, str] | None:
        return rerun_ids(
            worktree,
            env.sandbox,
            python=env.python,
            target=self.contract.target,
            ids=self.failing,
            timeout_s=self.left(),
            label=label,
        )

    def _collect(self, worktree: Path, env: PytestEnv, label: str) -> Collection:
        return collect_ids(
            worktree,
            env.sandbox,
            python=env.python,
            target=self.contract.target,
            timeout_s=self.left(),
            label=label,
        )

    def _integrity(
        self,
        base: Checkout,
        env: PytestEnv,
        branch_ids: Collection,
        outcomes: Iterable[TestOutcome],
    ) -> Integrity:
        if not branch_ids.complete:
            return _incomplete(branch_ids, "")
        base_ids = self._collect(base.path, env, "base")
        if not base_ids.complete and not base_ids.ids:
            return Integrity(incomplete=f"collecting the merge base's tests: {base_ids.detail}")
        co = self.job.checkout
        try:
            given = _compared(co, base.commit, base_ids.ids, branch_ids.ids, self.job.git_timeout_s)
        except GitError as exc:
            logger.warning("audit of %s@%s: commits unreadable: %s", co.repo, co.commit, exc)
            return Integrity(incomplete=f"reading the diff with the merge base failed: {exc}")
        by_id = {o.test_id: o.outcome for o in outcomes}
        found = check_integrity(replace(given, branch_outcomes=by_id or None))
        if not base_ids.complete:
            note = f"the merge base's collection ended with {base_ids.detail}: compared with "
            found = replace(found, notes=(f"{note}the {len(base_ids.ids)} tests it collected",))
        return found


def _compared(
    co: Checkout, base: str, base_ids: frozenset[str], branch_ids: frozenset[str], timeout_s: float
) -> IntegrityInput:
    """The guard's input but the run's outcomes: the diff of the two commits and the
    text of the files involved, read from the mirror's objects, never from a worktree
    (the branch's suite ran in one and could have rewritten any file, `.git` too).
    GitError if they cannot be read."""
    with IsolatedGit(co.mirror, object_format=co.object_format, timeout_s=timeout_s) as git:
        diff = committed_diff(git, base, co.commit, options=_DIFF_OPTIONS, paths=_DIFF_PATHS)
        changes = parse_diff(diff)
        gone = {split_id(i)[0] for i in base_ids - branch_ids}
        new = {split_id(i)[0] for i in branch_ids - base_ids}
        old_paths = {c.old_path for c in changes} | gone
        new_paths = {c.new_path for c in changes} | new
        return IntegrityInput(
            base_ids=base_ids,
            branch_ids=branch_ids,
            changes=changes,
            base_sources=committed_texts(git, base, old_paths, max_bytes=_MAX_SOURCE_BYTES),
            branch_sources=committed_texts(git, co.commit, new_paths, max_bytes=_MAX_SOURCE_BYTES),
        )


@dataclass(frozen=True)
class _BaseSide:
    label: str
    rerun: dict[str, str] | None = None
    integrity: Integrity | None = None
    problem: str = ""


def _incomplete(branch_ids: Collection, why: str) -> Integrity:
    """Unchecked: a FAIL if the branch's own collection failed, else just reported."""
    if not branch_ids.complete:
        detail = f"collecting the branch's tests: {branch_ids.detail}"
        return Integrity(incomplete=detail, fail_closed=True)
    return Integrity(incomplete=why)
