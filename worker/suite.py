"""Run the regression suite, `python -m pytest <target> -q`, in a job's worktree.

The process handling (timeout, whole-job kill, environment, limits) is the sandbox's;
this module knows pytest: its command line, its JUnit XML and what its output means.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from worker import proctree
from worker.junit import JunitSummary, parse_junit
from worker.sandbox import Sandbox, read_tail, run_bounded

logger = logging.getLogger("testgate.suite")


@dataclass(frozen=True)
class SuiteRun:
    """What happened when the suite was started. Never raised, always returned."""

    command: tuple[str, ...]
    exit_code: int | None  # None: no exit code was produced (spawn error, timeout)
    timed_out: bool
    spawn_error: str | None
    duration_s: float
    output_tail: str  # at most `tail_bytes` of the end of stdout+stderr
    output_bytes: int  # how much the suite printed in total
    junit: JunitSummary | None  # None when pytest wrote no readable JUnit XML
    leftover_killed: int = 0  # processes of the job still alive after it ended, killed

    @property
    def ran(self) -> bool:
        """True iff the suite really executed and produced an exit code (SPEC §6)."""
        return self.spawn_error is None and not self.timed_out and self.exit_code is not None


def suite_command(python: str, target: str, junit_path: Path) -> tuple[str, ...]:
    return (
        python,
        "-m",
        "pytest",
        target,
        "-q",
        f"--junitxml={junit_path}",
        "-p",
        "no:cacheprovider",
    )


def run_suite(
    worktree: Path,
    sandbox: Sandbox,
    *,
    python: str,
    target: str,
    timeout_s: float,
    tail_bytes: int = 4096,
) -> SuiteRun:
    """Run the suite in `worktree` inside `sandbox`; never raises.

    Whatever an earlier, dead delivery of the same job (same cookie) left running on
    this host is killed first.
    """
    if left := proctree.sweep(sandbox.cookie):
        logger.warning("killed %d process(es) of an earlier delivery of this job", left)
    junit_path = sandbox.scratch_dir / "junit.xml"
    log_path = sandbox.scratch_dir / "output.log"
    command = suite_command(python, target, junit_path)
    ended = run_bounded(command, worktree, sandbox, log_path=log_path, timeout_s=timeout_s)
    tail, size = read_tail(log_path, tail_bytes)
    return SuiteRun(
        command=command,
        exit_code=ended.exit_code,
        timed_out=ended.timed_out,
        spawn_error=ended.spawn_error,
        duration_s=ended.duration_s,
        output_tail=tail,
        output_bytes=size,
        junit=_read_junit(junit_path),
        leftover_killed=ended.leftover_killed,
    )


def _read_junit(path: Path) -> JunitSummary | None:
    try:
        return parse_junit(path.read_bytes())
    except OSError:
        return None
