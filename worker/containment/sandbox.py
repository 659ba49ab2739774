"""Run one untrusted command (a suite, a setup step) bounded in time, environment and
resources, and leave none of its processes behind.

The command runs in its own session with an allowlisted environment; every process it
starts carries the job's cookie, so on timeout the whole job is killed - including what
left the process tree - and after a normal exit whatever is left is killed too.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from worker.containment import proctree
from worker.containment.bwrap import SuiteView, bwrap_prefix
from worker.containment.cgroup import JobCgroup, pids_limit_note
from worker.containment.launch import Running, start_cold, start_warm
from worker.containment.limits import Limits
from worker.containment.warm import WarmPytest, warm_pytest
from worker.containment.witness import StartWitness
from worker.errors import StartFailed

__all__ = ["Bounded", "Limits", "Sandbox", "SuiteView", "read_tail", "run_bounded"]

logger = logging.getLogger("testgate.sandbox")

# Only what a test suite needs to run; nothing that could carry a secret.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_FORBIDDEN_PREFIX = "TESTGATE_"
_REAP_TIMEOUT_S = 30
_TICK_S = 1.0


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
    view: SuiteView | None = None  # contained, what its commands see; None: the worker's
    # Where the suite's HOME, TMPDIR and output directory are made (a pool process's
    # slot); None: in `scratch_dir`.
    suite_dir: Path | None = None

    @property
    def home_dir(self) -> Path:
        return (self.suite_dir or self.scratch_dir) / "home"

    @property
    def tmp_dir(self) -> Path:
        return (self.suite_dir or self.scratch_dir) / "tmp"

    @property
    def out_dir(self) -> Path:
        """Where the suite writes what the worker reads after it (the probe's records,
        progress): inside the suite's reach, so every read of it is hostile-safe."""
        return (self.suite_dir or self.scratch_dir) / "out"

    @property
    def own_dirs(self) -> tuple[Path, Path, Path]:
        return (self.home_dir, self.tmp_dir, self.out_dir)

    def wrap(self, command: Sequence[str], cwd: Path) -> list[str]:
        """The argv to execute in `cwd`. The cgroup shell, `prlimit`, `unshare` and bwrap
        all exec the command, so the pid that is waited for and killed is the job's own."""
        enter = self.cgroup.enter_prefix() if self.cgroup else []
        isolate: list[str] = []
        if self.view is not None:
            isolate = bwrap_prefix(self.view.with_paths(writable=self.own_dirs), cwd)
        elif self.isolate_network:
            isolate = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
            isolate.append("--")
        return [*enter, *self.limits.prefix(), *isolate, *command]

    def with_view_paths(
        self, *, writable: Sequence[Path] = (), readable: Sequence[Path] = ()
    ) -> Sandbox:
        """The same sandbox, its commands seeing these paths too (no-op uncontained)."""
        if self.view is None:
            return self
        return replace(self, view=self.view.with_paths(writable=writable, readable=readable))

    def kill_leftovers(self) -> int:
        """Kill whatever of the job still runs: by cookie, and by cgroup membership (which
        also finds a process that cleared its environment)."""
        killed = proctree.sweep(self.cookie) if self.tree_kill else 0
        if self.cgroup is not None:
            killed += self.cgroup.kill_all()
        return killed

    def limit_notes(self) -> tuple[str, ...]:
        """Limits the job ran into, for the report."""
        if self.cgroup is not None and self.cgroup.limit_hits() > 0:
            return (pids_limit_note(self.cgroup.max_pids),)
        return ()


@dataclass(frozen=True)
class Bounded:
    """How a bounded command ended. `exit_code` is None when it produced none."""

    exit_code: int | None
    timed_out: bool
    spawn_error: str | None
    duration_s: float
    leftover_killed: int = 0
    limit_notes: tuple[str, ...] = ()
    # Whether the interpreter said it came up (None: the command gives no such word):
    # a started suite that ends in any way has run.
    started: bool | None = None


def warm_interpreter(python: str = sys.executable) -> WarmPytest:
    """This process's warm pytest interpreter for `python`, started with the start-up
    environment every suite gets (it does not depend on the job)."""
    return warm_pytest(warm_start_environment(), python)


def warm_start_environment() -> dict[str, str]:
    """The environment every suite starts with, whatever its job."""
    home = Path(tempfile.gettempdir()) / "testgate-no-home"
    return sandbox_environment(os.environ, home=home, tmpdir=home, cookie="")


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


def run_bounded(
    command: Sequence[str],
    cwd: Path,
    sandbox: Sandbox,
    *,
    log_path: Path,
    timeout_s: float,
    on_tick: Callable[[], None] | None = None,
    witness: StartWitness | None = None,
) -> Bounded:
    """Run `command` in `cwd`, stdout and stderr streamed to `log_path`; never raises.

    `on_tick` is called about once a second while the command runs (progress reports).
    With a `witness`, a `python -m pytest` says when its interpreter came up.
    """
    for directory in sandbox.own_dirs:
        real_dir(directory)
    if sandbox.view is not None and not _is_real_dir(cwd):
        # A warm contained run can write the whole slot: what it swapped for a link must
        # never become a writable bind of the link's target.
        why = f"{cwd} is no longer a directory of its own (a link or gone)"
        logger.error("%s not started: %s", command[0], why)
        return Bounded(None, False, why, 0.0, started=False if witness else None)
    env = sandbox_environment(
        os.environ,
        home=sandbox.home_dir,
        tmpdir=sandbox.tmp_dir,
        cookie=sandbox.cookie,
        extra=sandbox.extra_env,
    )
    started = time.monotonic()
    try:
        running = start_warm(command, cwd, sandbox, env, log_path, witness) or start_cold(
            command, cwd, sandbox, env, log_path, witness
        )
    except StartFailed as exc:
        logger.error("%s could not be started in %s: %s", command[0], cwd, exc)
        return Bounded(None, False, str(exc), 0.0, started=False if witness else None)
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
        notes = running.limit_notes()
    finally:
        killed = running.close()
    duration = time.monotonic() - started
    came_up = None if witness is None else witness.started()
    leftovers = killed + sandbox.kill_leftovers()
    if never_ran is not None:
        logger.error("%s in %s never ran: %s", command[0], cwd, never_ran)
        return Bounded(None, False, never_ran, duration, leftovers, started=came_up)
    notes = sandbox.limit_notes() + notes
    return Bounded(exit_code, timed_out, None, duration, leftovers, notes, started=came_up)


def _wait(
    running: Running, sandbox: Sandbox, timeout_s: float, on_tick: Callable[[], None] | None
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


def real_dir(path: Path) -> Path:
    """`path` as a directory, made where missing; it and its parent, if a link or not a
    directory (a warm contained run may swap anything in its slot), are replaced by an
    empty directory. Only while no process of the job runs: nothing can race it."""
    for directory in (path.parent, path):
        if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
            logger.warning("%s was replaced by a link or a file: made a directory again", path)
            directory.unlink()
        directory.mkdir(parents=True, exist_ok=True)
    return path


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


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
