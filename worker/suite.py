"""Run the regression suite, `python -m pytest <target> -q`, in a job's worktree.

The process handling (timeout, whole-job kill, environment, limits) is the sandbox's;
this module knows pytest: its command line, its JUnit XML and what its output means.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from worker.junit import JunitSummary, parse_junit
from worker.progress import (
    PLUGIN_MODULE,
    PROGRESS_FILE_VAR,
    Progress,
    ProgressWatcher,
    install_plugin,
)
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
    limit_notes: tuple[str, ...] = ()  # resource limits the suite ran into

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
        "-p",
        PLUGIN_MODULE,
    )


def run_suite(
    worktree: Path,
    sandbox: Sandbox,
    *,
    python: str,
    target: str,
    timeout_s: float,
    tail_bytes: int = 4096,
    progress: Callable[[Progress], None] | None = None,
) -> SuiteRun:
    """Run the suite in `worktree` inside `sandbox`; never raises."""
    junit_path = sandbox.scratch_dir / "junit.xml"
    log_path = sandbox.scratch_dir / "output.log"
    progress_path = sandbox.scratch_dir / "progress.json"
    watcher = ProgressWatcher(progress_path, progress) if progress else None
    command = suite_command(python, target, junit_path)
    ended = run_bounded(
        command,
        worktree,
        _with_progress_plugin(sandbox, progress_path),
        log_path=log_path,
        timeout_s=timeout_s,
        on_tick=watcher,
    )
    if watcher is not None:
        watcher()  # the last word, which a tick may have missed
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
        limit_notes=ended.limit_notes,
    )


def _with_progress_plugin(sandbox: Sandbox, progress_path: Path) -> Sandbox:
    plugins = install_plugin(sandbox.scratch_dir / "plugins")
    # Absolute, so a contract's relative PYTHONPATH (e.g. "src") keeps working after it.
    python_path = ":".join(p for p in (str(plugins), sandbox.extra_env.get("PYTHONPATH")) if p)
    extra = {**sandbox.extra_env, "PYTHONPATH": python_path, PROGRESS_FILE_VAR: str(progress_path)}
    return replace(sandbox, extra_env=extra)


def _read_junit(path: Path) -> JunitSummary | None:
    try:
        return parse_junit(path.read_bytes())
    except OSError:
        return None
