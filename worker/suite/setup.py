"""A contract's setup steps (e.g. installing the project), run in the worktree before
the suite. A step that fails means the suite never ran: an infrastructure outcome that
names the step, never a verdict on the code."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from worker.containment.sandbox import Sandbox, read_tail, run_bounded

logger = logging.getLogger("testgate.setup")


@dataclass(frozen=True)
class SetupFailure:
    step: int  # 1-based
    command: str
    why: str
    output_tail: str

    def describe(self) -> str:
        return f"setup step {self.step} `{self.command}` {self.why}"


def setup_argv(command: str, python: str) -> list[str]:
    """Split a step without a shell; a leading `python` is the suite's interpreter."""
    argv = shlex.split(command)
    if argv and argv[0] == "python":
        argv[0] = python
    return argv


def run_setup(
    worktree: Path,
    sandbox: Sandbox,
    commands: Sequence[str],
    *,
    python: str,
    timeout_s: float,
    tail_bytes: int = 4096,
) -> SetupFailure | None:
    """Run every step in order; None when all succeeded, else the first failure."""
    log_path = sandbox.scratch_dir / "setup.log"
    for step, command in enumerate(commands, start=1):
        argv = setup_argv(command, python)
        if not argv:
            continue
        ended = run_bounded(argv, worktree, sandbox, log_path=log_path, timeout_s=timeout_s)
        if ended.spawn_error:
            why = f"could not be started: {ended.spawn_error}"
        elif ended.timed_out:
            why = f"timed out after {timeout_s}s"
        elif ended.exit_code != 0:
            why = f"exited with {ended.exit_code}"
        else:
            continue
        tail, _ = read_tail(log_path, tail_bytes)
        failure = SetupFailure(step, command, why, tail)
        logger.error("%s in %s", failure.describe(), worktree)
        return failure
    return None
