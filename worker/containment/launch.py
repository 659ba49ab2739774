"""Starting one bounded command: cold (a new process, through the sandbox's wrappers)
or warm (a fork of the pool process's warm pytest interpreter), and telling afterwards
whether it ever ran. What a started command is, for the sandbox's wait loop."""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from worker.containment.bwrap import SuiteView
from worker.containment.cgroup import JobCgroup
from worker.containment.limits import Limits
from worker.containment.warm import SuiteLaunch, WarmPytest
from worker.containment.witness import StartWitness
from worker.errors import StartFailed
from worker.insuite import BOOT_SCRIPT

logger = logging.getLogger("testgate.launch")

# What util-linux wrappers exit with when the exec itself fails (EX_EXEC_FAILED/ENOENT).
_WRAPPER_EXEC_FAILED = frozenset({126, 127})
# bwrap exits 128 + N when the command was killed by signal N.
_SIGNALLED_BASE = 128


class Running(Protocol):
    """A started command, wherever it was started from."""

    pid: int
    how: str  # "cold" or "warm", for the log

    def exited(self, timeout: float) -> bool: ...
    def wait(self, timeout: float | None = None) -> int | None: ...
    def never_ran(self, exit_code: int | None) -> str | None: ...
    def limit_notes(self) -> tuple[str, ...]: ...
    # Releases what the start holds; returns how many leftover processes it killed.
    def close(self) -> int: ...


class Wrapping(Protocol):
    """What a start needs of the sandbox (worker/containment/sandbox.py)."""

    @property
    def warm(self) -> WarmPytest | None: ...
    @property
    def isolate_network(self) -> bool: ...
    @property
    def view(self) -> SuiteView | None: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def cgroup(self) -> JobCgroup | None: ...
    @property
    def own_dirs(self) -> tuple[Path, Path, Path]: ...
    def wrap(self, command: Sequence[str], cwd: Path) -> list[str]: ...


def is_pytest(command: Sequence[str]) -> bool:
    return list(command[1:3]) == ["-m", "pytest"]


def start_warm(
    command: Sequence[str],
    cwd: Path,
    sandbox: Wrapping,
    env: dict[str, str],
    log_path: Path,
    witness: StartWitness | None,
) -> Running | None:
    """The suite forked from the warm interpreter; None: start it cold."""
    if sandbox.warm is None or not is_pytest(command):
        return None
    view = sandbox.view
    if sandbox.isolate_network and view is None:
        return None  # a namespace of its own needs a fresh exec through its wrapper
    if view is not None:
        env = {**env, "PWD": str(cwd)}  # what bwrap --chdir sets for a cold start
    launch = SuiteLaunch(
        args=tuple(command[3:]),
        cwd=cwd,
        env={**env, **(witness.warm_env() if witness else {})},
        log_path=log_path,
        rlimits=sandbox.limits.rlimits(),
        # A contained fork cannot reach the job's cgroup (its warm interpreter's own
        # cgroup holds it), and sees what a cold start's view would show it.
        cgroup_procs=sandbox.cgroup.procs_file if sandbox.cgroup and view is None else None,
        view=view.with_paths(writable=sandbox.own_dirs) if view is not None else None,
        witness=witness,
    )
    started = sandbox.warm.start(command, launch)
    if isinstance(started, str):
        logger.info("pytest in %s starts cold: %s", cwd, started)
        return None
    return started


def start_cold(
    command: Sequence[str],
    cwd: Path,
    sandbox: Wrapping,
    env: dict[str, str],
    log_path: Path,
    witness: StartWitness | None,
) -> Running:
    """Start `command` as a new process; raises StartFailed."""
    # Behind a wrapper (prlimit, bwrap) a missing program is the wrapper's exit code,
    # which would read as a suite that ran and failed: look for it before starting.
    if not _executable(command[0], cwd, env):
        raise StartFailed(f"{command[0]}: not found or not executable")
    if witness is not None and is_pytest(command):
        # `python boot.py ARGS` becomes `python -m pytest ARGS` once it said it is up.
        command = [command[0], str(BOOT_SCRIPT), *command[3:]]
        env = {**env, **witness.cold_env()}
    else:
        witness = None
    argv = sandbox.wrap(command, cwd)
    with log_path.open("ab") as log:
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=witness.child_fds if witness else (),
            )
        except OSError as exc:
            raise StartFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if witness is not None:
                witness.spawned()
    return _ColdStarted(
        process,
        wrapper=argv[0] if argv[0] != command[0] else None,
        witness=witness,
        signals_as_exit=sandbox.view is not None,
    )


class _ColdStarted:
    """A command this process started. Its end is seen on a pidfd at once:
    Popen.wait(timeout) polls with sleeps of up to 50 ms, pure latency on every job."""

    how = "cold"

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        wrapper: str | None,
        witness: StartWitness | None,
        signals_as_exit: bool,
    ) -> None:
        self.pid = process.pid
        self._process = process
        self._wrapper = wrapper
        self._witness = witness
        self._signals_as_exit = signals_as_exit
        self._poller = select.poll()
        try:
            self._pidfd: int | None = os.pidfd_open(process.pid)
            self._poller.register(self._pidfd, select.POLLIN)
        except OSError:  # no pidfd on this kernel: Popen's polling
            self._pidfd = None

    def exited(self, timeout: float) -> bool:
        if self._pidfd is None:
            return self.wait(timeout) is not None
        return bool(self._poller.poll(timeout * 1000))

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return _signal_from_exit(code) if self._signals_as_exit else code

    def never_ran(self, exit_code: int | None) -> str | None:
        if self._witness is not None:
            if self._witness.started():
                return None
            return f"the interpreter never came up (exit {exit_code}, see its output)"
        if self._wrapper is not None and exit_code in _WRAPPER_EXEC_FAILED:
            # prlimit/bwrap/the cgroup shell could not exec the command.
            return f"{self._wrapper} could not execute the command (exit {exit_code})"
        return None

    def limit_notes(self) -> tuple[str, ...]:
        return ()  # the job's cgroup says it (Sandbox.limit_notes)

    def close(self) -> int:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return 0


def _signal_from_exit(code: int) -> int:
    """bwrap's 128 + N for a command killed by signal N, as Popen says it: -N."""
    number = code - _SIGNALLED_BASE
    if code > _SIGNALLED_BASE and number in {s.value for s in signal.Signals}:
        return -number
    return code


def _executable(program: str, cwd: Path, env: Mapping[str, str]) -> bool:
    if "/" in program:
        path = Path(program) if Path(program).is_absolute() else cwd / program
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(program, path=env.get("PATH")) is not None
