"""Run the regression suite in a job's worktree, bounded in time and output.

(Interface fixed; implementation to be filled in.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker.junit import JunitSummary


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


def run_suite(
    worktree: Path,
    *,
    python: str,
    target: str,
    timeout_s: float,
    kill_grace_s: float,
    tree_kill: bool,
    scratch_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    tail_bytes: int = 4096,
) -> SuiteRun:
    raise NotImplementedError
