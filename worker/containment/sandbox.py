"""Run one untrusted command (a suite, a setup step) bounded in time, environment and
resources, and leave none of its processes behind.

The command runs in its own session with an allowlisted environment; every process it
starts carries the job's cookie, so on timeout the whole job is killed - including what
left the process tree - and after a normal exit whatever is left is killed too.
"""

from __future__ import annotations

import logging
import os
import resource
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from worker.containment import proctree
from worker.containment.cgroup import JobCgroup
from worker.containment.warm import SuiteLaunch, WarmPytest, WarmRun, warm_pytest
from worker.insuite import zygote

logger = logging.getLogger("testgate.sandbox")

# Only what a test suite needs to run; nothing that could carry a secret.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_FORBIDDEN_PREFIX = "TESTGATE_"
_REAP_TIMEOUT_S = 30
_TICK_S = 1.0
# What util-linux wrappers exit with when the exec itself fails (EX_EXEC_FAILED/ENOENT).
_WRAPPER_EXEC_FAILED = frozenset({126, 127})


@dataclass(frozen=True)
class Limits:
    """Resource limits of the command's processes (inherited by its children); 0 means
    none. `max_processes` counts every process of the user (RLIMIT_NPROC)."""

    max_memory_mb: int = 0  # address space per process
    max_file_mb: int = 0  # largest file a process may write, its output log included
    max_processes: int = 0

    def prefix(self) -> list[str]:
        """`prlimit` with these limits, to put before the command ([] when unlimited).

        A wrapper that execs the command rather than a pre-exec hook: with a hook Python
        must fork the whole worker instead of using vfork, ~60 ms more per job.
        """
        options = [f"--{option}={value}" for option, _, value in self._set()]
        return ["prlimit", *options, "--"] if options else []

    def rlimits(self) -> tuple[tuple[int, int], ...]:
        """The same limits as (resource, value) pairs, for a process to set on itself."""
        return tuple((limit, value) for _, limit, value in self._set())

    def _set(self) -> list[tuple[str, int, int]]:
        """(prlimit option, resource, value) of each limit that is set."""
        mib = 1024 * 1024
        limits = (
            ("as", resource.RLIMIT_AS, self.max_memory_mb * mib),
            ("fsize", resource.RLIMIT_FSIZE, self.max_file_mb * mib),
            ("nproc", resource.RLIMIT_NPROC, self.max_processes),
        )
        return [limit for limit in limits if limit[2] > 0]


@dataclass(frozen=True)
class Sandbox:
    """Where and how a job's commands run. One per job: the cookie marks its processes."""

    scratch_dir: Path
    cookie: str
    kill_grace_s: float = 5.0
    tree_kill: bool = True
    limits: Limits = field(default_factory=Limits)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    isolate_network: bool = False  # a network namespace of its own: no network at all
    cgroup: JobCgroup | None = None  # the job's pids cgroup, where there can be one
    warm: WarmPytest | None = None  # runs `python -m pytest` without a cold start-up

    def wrap(self, command: Sequence[str]) -> list[str]:
        """The argv to execute. The cgroup shell, `prlimit` and `unshare` all exec the
        command in place, so the pid that is waited for and killed is the command's own."""
        enter = self.cgroup.enter_prefix() if self.cgroup else []
        isolate: list[str] = []
        if self.isolate_network:
            isolate = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
            isolate.append("--")
        return [*enter, *isolate, *self.limits.prefix(), *command]

    def kill_leftovers(self) -> int:
        """Kill whatever of the job still runs: by cookie, and by cgroup membership (which
        also finds a process that cleared its environment)."""
        killed = proctree.sweep(self.cookie) if self.tree_kill else 0
        if self.cgroup is not None:
            killed += self.cgroup.kill_all()
        return killed

    def limit_notes(self) -> tuple[str, ...]:
        """Limits the job ran into, for the report."""
        if self.cgroup is not None and self.cgroup.limit_reached():
            return (
                f"the suite reached its limit of {self.cgroup.max_pids} processes "
                "(TESTGATE_SUITE_MAX_PIDS): a fork bomb or runaway process spawning; "
                "forks beyond it failed",
            )
        return ()

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        return sandbox_environment(
            base,
            home=self.scratch_dir / "home",
            tmpdir=self.scratch_dir / "tmp",
            cookie=self.cookie,
            extra=self.extra_env,
        )


@dataclass(frozen=True)
class Bounded:
    """How a bounded command ended. `exit_code` is None when it produced none."""

    exit_code: int | None
    timed_out: bool
    spawn_error: str | None
    duration_s: float
    leftover_killed: int = 0
    limit_notes: tuple[str, ...] = ()


def warm_interpreter() -> WarmPytest:
    """This process's warm pytest interpreter, started with the start-up environment
    every suite gets (it does not depend on the job)."""
    home = Path(tempfile.gettempdir()) / "testgate-no-home"
    return warm_pytest(sandbox_environment(os.environ, home=home, tmpdir=home, cookie=""))


def sandbox_environment(
    base: Mapping[str, str],
    *,
    home: Path,
    tmpdir: Path,
    cookie: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The command's whole environment: an allowlist of `base`, private HOME/TMPDIR, the
    job cookie, then `extra` (never a TESTGATE_* variable, whatever it asks)."""
    env = {key: base[key] for key in INHERITED_ENV if key in base}
    env.update(
        {
            "HOME": str(home),
            "TMPDIR": str(tmpdir),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "CI": "true",
            proctree.COOKIE_VAR: cookie,
        }
    )
    for key, value in (extra or {}).items():
        if key.upper().startswith(_FORBIDDEN_PREFIX) or key == proctree.COOKIE_VAR:
            logger.warning("variable %s dropped: reserved for testgate", key)
            continue
        env[key] = value
    return env


class _Running(Protocol):
    """A started command, wherever it was started from."""

    pid: int
    how: str  # "cold" or "warm", for the log

    def exited(self, timeout: float) -> bool: ...

    def wait(self, timeout: float | None = None) -> int | None: ...

    def never_ran(self, exit_code: int | None) -> str | None: ...

    def close(self) -> None: ...


def run_bounded(
    command: Sequence[str],
    cwd: Path,
    sandbox: Sandbox,
    *,
    log_path: Path,
    timeout_s: float,
    on_tick: Callable[[], None] | None = None,
) -> Bounded:
    """Run `command` in `cwd`, stdout and stderr streamed to `log_path`; never raises.

    `on_tick` is called about once a second while the command runs (progress reports).
    """
    for directory in (sandbox.scratch_dir / "home", sandbox.scratch_dir / "tmp"):
        directory.mkdir(parents=True, exist_ok=True)
    env = sandbox.environment(os.environ)
    started = time.monotonic()
    running: _Running | None = _start_warm(command, cwd, sandbox, env, log_path)
    if running is None:
        cold = _start_cold(command, cwd, sandbox, env, log_path)
        if isinstance(cold, Bounded):
            return cold
        running = cold
    logger.info(
        "started %s in %s (%s): pid %d, timeout %ss",
        command[0],
        cwd,
        running.how,
        running.pid,
        timeout_s,
    )
    try:
        exit_code, timed_out = _wait(running, sandbox, timeout_s, on_tick)
        never_ran = running.never_ran(exit_code)
    finally:
        running.close()
    duration = time.monotonic() - started
    if never_ran is not None:
        logger.error("%s in %s never ran: %s", command[0], cwd, never_ran)
        return Bounded(None, False, never_ran, duration, sandbox.kill_leftovers())
    leftovers = sandbox.kill_leftovers()
    return Bounded(exit_code, timed_out, None, duration, leftovers, sandbox.limit_notes())


def _start_warm(
    command: Sequence[str], cwd: Path, sandbox: Sandbox, env: dict[str, str], log_path: Path
) -> _Running | None:
    """The suite forked from the warm interpreter; None: start it cold."""
    if sandbox.warm is None or list(command[1:3]) != ["-m", "pytest"]:
        return None
    if sandbox.isolate_network:
        return None  # a network namespace needs `unshare` around a fresh exec
    launch = SuiteLaunch(
        args=tuple(command[3:]),
        cwd=cwd,
        env=env,
        log_path=log_path,
        rlimits=sandbox.limits.rlimits(),
        cgroup_procs=sandbox.cgroup.procs_file if sandbox.cgroup else None,
    )
    started = sandbox.warm.start(command, launch)
    if isinstance(started, str):
        logger.info("pytest in %s starts cold: %s", cwd, started)
        return None
    return _WarmStarted(started)


def _start_cold(
    command: Sequence[str], cwd: Path, sandbox: Sandbox, env: dict[str, str], log_path: Path
) -> _Running | Bounded:
    argv = sandbox.wrap(command)
    # Behind a wrapper (prlimit, unshare) a missing program is the wrapper's exit code,
    # which would read as a suite that ran and failed: look for it before starting.
    if not _executable(command[0], cwd, env):
        logger.error("%s could not be started in %s: not found or not executable", command[0], cwd)
        return Bounded(None, False, f"{command[0]}: not found or not executable", 0.0)
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
            )
        except OSError as exc:
            logger.error("%s could not be started in %s: %s", command[0], cwd, exc)
            return Bounded(None, False, f"{type(exc).__name__}: {exc}", 0.0)
    return _ColdStarted(process, wrapper=argv[0] if argv[0] != command[0] else None)


class _ColdStarted:
    """A command this process started. Its end is seen on a pidfd at once:
    Popen.wait(timeout) polls with sleeps of up to 50 ms, pure latency on every job."""

    how = "cold"

    def __init__(self, process: subprocess.Popen[bytes], wrapper: str | None) -> None:
        self.pid = process.pid
        self._process = process
        self._wrapper = wrapper
        self._pidfd: int | None = None
        self._poller = select.poll()
        try:
            self._pidfd = os.pidfd_open(process.pid)
            self._poller.register(self._pidfd, select.POLLIN)
        except OSError:  # no pidfd on this kernel: Popen's polling
            self._pidfd = None

    def exited(self, timeout: float) -> bool:
        if self._pidfd is None:
            return self.wait(timeout) is not None
        return bool(self._poller.poll(timeout * 1000))

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def never_ran(self, exit_code: int | None) -> str | None:
        if self._wrapper is not None and exit_code in _WRAPPER_EXEC_FAILED:
            # prlimit/unshare/the cgroup shell could not exec the command.
            return f"{self._wrapper} could not execute the command (exit {exit_code})"
        return None

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)


class _WarmStarted:
    """A suite forked from the warm interpreter (worker/containment/warm.py)."""

    how = "warm"

    def __init__(self, run: WarmRun) -> None:
        self.pid = run.pid
        self._run = run

    def exited(self, timeout: float) -> bool:
        return self._run.exited(timeout)

    def wait(self, timeout: float | None = None) -> int | None:
        return self._run.wait(timeout)

    def never_ran(self, exit_code: int | None) -> str | None:
        if self._run.lost:
            return "the warm interpreter died before the suite's exit code was known"
        if exit_code == zygote.SETUP_FAILED_EXIT:
            return "the warm interpreter could not start the suite (see its output)"
        return None

    def close(self) -> None:
        pass


def _executable(program: str, cwd: Path, env: Mapping[str, str]) -> bool:
    if "/" in program:
        path = Path(program) if Path(program).is_absolute() else cwd / program
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(program, path=env.get("PATH")) is not None


def _wait(
    running: _Running,
    sandbox: Sandbox,
    timeout_s: float,
    on_tick: Callable[[], None] | None,
) -> tuple[int | None, bool]:
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        if running.exited(min(remaining, _TICK_S)):
            if (code := running.wait(_REAP_TIMEOUT_S)) is not None:
                return code, False
            break  # its end is known but not its exit code: kill what is left of it
        if on_tick is not None:
            on_tick()
    signalled = proctree.kill_job(
        sandbox.cookie, running.pid, grace_s=sandbox.kill_grace_s, tree=sandbox.tree_kill
    )
    if sandbox.cgroup is not None:
        signalled += sandbox.cgroup.kill_all()
    timed_out = time.monotonic() >= deadline
    logger.warning(
        "pid %d %s: %d process(es) killed",
        running.pid,
        f"timed out after {timeout_s}s" if timed_out else "lost its exit code",
        signalled,
    )
    if running.wait(_REAP_TIMEOUT_S) is None and timed_out:
        logger.error("pid %d did not die after SIGKILL", running.pid)
    return None, timed_out


def read_tail(path: Path, limit: int) -> tuple[str, int]:
    """The last `limit` bytes of `path` (from a line start when possible) and its size."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - limit))
            data = handle.read(limit)
    except OSError:
        return "", 0
    if size > limit:
        newline = data.find(b"\n")
        if 0 <= newline < len(data) // 2:
            data = data[newline + 1 :]
    return data.decode("utf-8", errors="replace"), size
