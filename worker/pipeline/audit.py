"""A contract's opt-in second look at a suite that ran: the test-integrity guard
(`integrity = true`) and the classification of failures (`classify = true`).

Both compare the tested commit with its merge base on main, in a second worktree of
the same mirror, through the job's sandbox (a fresh scratch for the base side, so
nothing the branch's suite left in HOME or TMPDIR reaches it). All their pytest runs
share one budget: the contract's timeout again. What cannot be done is reported, never
raised; only the branch's own inability to be checked fails it (fail closed).
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
from worker.git.command import run_git
from worker.git.diff import parse_diff
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
_DIFF_COMMAND = (
    "-c",
    "core.quotepath=off",
    "diff",
    "-M",
    "--unified=0",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
)
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
            facts,
            integrity=self.integrity,
            classified=self.classified or (),
            failure_packet=packet,
        )


NO_AUDIT = Audit()


def audit_suite(job: AuditJob, suite: SuiteRun, *, branch: PytestEnv, raw: PytestEnv) -> Audit:
    """Audit a suite that ran. `branch` is what the suite ran with; `raw` is the sandbox
    and interpreter before the contract's setup, to prepare the merge base with."""
    contract = job.contract
    if not (contract.integrity or contract.classify) or not suite.ran:
        return NO_AUDIT
    failing = failing_tests(suite.outcomes)
    found = _Audit(job, branch, raw, [t.test_id for t in failing]).run(suite.outcomes)
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
    def __init__(
        self, job: AuditJob, branch: PytestEnv, raw: PytestEnv, failing: list[str]
    ) -> None:
        self.job, self.branch, self.raw, self.failing = job, branch, raw, failing
        self.contract = job.contract
        self.deadline = time.monotonic() + job.contract.timeout_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, outcomes: Iterable[TestOutcome]) -> Audit:
        co, contract = self.job.checkout, self.contract
        classifying = contract.classify and bool(self.failing)
        # First, while it is still "right away": the flaky check on the branch.
        branch_rerun = self._rerun(co.path, self.branch, "branch") if classifying else None
        branch_ids = self._collect(co.path, self.branch, "branch") if contract.integrity else None
        base = self._base_side(classifying, branch_ids, outcomes)
        integrity = base.integrity
        if branch_ids is not None and integrity is None:
            integrity = _incomplete(branch_ids, base.problem)
        classified = None
        if contract.classify:
            classified = classify(self.failing, branch_rerun, base.rerun, base_label=base.label)
        return Audit(enabled=True, integrity=integrity, classified=classified)

    def _base_side(
        self, classifying: bool, branch_ids: Collection | None, outcomes: Iterable[TestOutcome]
    ) -> _BaseSide:
        co = self.job.checkout
        if not classifying and (branch_ids is None or not branch_ids.complete):
            return _BaseSide("main's merge base")  # nothing to compare on the base side
        try:
            sha = merge_base(
                co.repo,
                co.commit,
                BASE_BRANCH,
                workdir=self.job.workdir,
                git_timeout_s=self.job.git_timeout_s,
            )
        except CheckoutError as exc:
            logger.warning("audit of %s@%s: no merge base: %s", co.repo, co.commit, exc)
            return _BaseSide("main's merge base", problem=f"no merge base with main: {exc}")
        label = f"main's merge base {sha[:10]}"
        try:
            with self._base_checkout(sha) as base:
                env = self._prepare(base.path)
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

    def _base_checkout(self, sha: str) -> AbstractContextManager[Checkout]:
        return checkout(
            self.job.checkout.repo,
            BASE_BRANCH,
            sha,
            workdir=self.job.workdir,
            url_template=self.job.url_template,
            git_timeout_s=self.job.git_timeout_s,
        )

    def _prepare(self, worktree: Path) -> PytestEnv | str:
        """The merge base's sandbox, set up as the contract says, in a fresh scratch."""
        scratch = self.raw.sandbox.scratch_dir / "base"
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
            diff = run_git(
                [*_DIFF_COMMAND, base.commit, co.commit, "--", *_DIFF_PATHS],
                co.path,
                timeout_s=self.job.git_timeout_s,
            )
        except GitError as exc:
            return Integrity(incomplete=f"the diff with the merge base failed: {exc}")
        changes = parse_diff(diff)
        gone = {split_id(i)[0] for i in base_ids.ids - branch_ids.ids}
        new = {split_id(i)[0] for i in branch_ids.ids - base_ids.ids}
        by_id = {o.test_id: o.outcome for o in outcomes}
        found = check_integrity(
            IntegrityInput(
                base_ids=base_ids.ids,
                branch_ids=branch_ids.ids,
                changes=changes,
                base_sources=read_sources(base.path, {c.old_path for c in changes} | gone),
                branch_sources=read_sources(co.path, {c.new_path for c in changes} | new),
                branch_outcomes=by_id or None,
            )
        )
        if not base_ids.complete:
            note = f"the merge base's collection ended with {base_ids.detail}: compared with "
            found = replace(found, notes=(f"{note}the {len(base_ids.ids)} tests it collected",))
        return found


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


def read_sources(root: Path, paths: Iterable[str | None]) -> dict[str, str]:
    """The text of each path that is a regular file inside `root` (never a symlink,
    never above a size bound); paths come from the diff and the test ids."""
    top = root.resolve()
    sources: dict[str, str] = {}
    for rel in sorted(p for p in paths if p):
        path = root / rel
        try:
            if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(top):
                continue
            if path.stat().st_size <= _MAX_SOURCE_BYTES:
                sources[rel] = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return sources
