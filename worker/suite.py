"""Run the regression suite in a job's worktree, bounded in time and output.

The suite is untrusted code: it runs in its own session with an allowlisted
environment, its output goes to a file (only a bounded tail is ever read back), and
on timeout the whole job - including anything that left the process tree - is killed.
"""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker import proctree
from worker.junit import JunitSummary, parse_junit

logger = logging.getLogger("testgate.suite")

# Only what a test suite needs to run; nothing that could carry a secret.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_FORBIDDEN_PREFIX = "TESTGATE_"
_REAP_TIMEOUT_S = 30


@dataclass(frozen=True)
class SuiteLimits:
    """Resource limits applied to the suite's process (inherited by its children).
    0 means no limit. `max_processes` counts every process of the user (RLIMIT_NPROC)."""

    max_memory_mb: int = 0  # address space per process
    max_file_mb: int = 0  # largest file a process may write, the output log included
    max_processes: int = 0

    def apply(self) -> None:
        """Runs in the forked child, before exec: only async-signal-safe-ish work."""
        mib = 1024 * 1024
        for limit, value in (
            (resource.RLIMIT_AS, self.max_memory_mb * mib),
            (resource.RLIMIT_FSIZE, self.max_file_mb * mib),
            (resource.RLIMIT_NPROC, self.max_processes),
        ):
            if value > 0:
                resource.setrlimit(limit, (value, value))


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


def suite_environment(
    base: Mapping[str, str],
    *,
    home: Path,
    tmpdir: Path,
    cookie: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The suite's whole environment: an allowlist of `base`, private HOME/TMPDIR, the
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
            logger.warning("suite variable %s dropped: reserved for testgate", key)
            continue
        env[key] = value
    return env


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
    cookie: str | None = None,
    limits: SuiteLimits | None = None,
) -> SuiteRun:
    """`python -m pytest <target> -q` in `worktree`; never raises.

    `cookie` marks every process of the run; a caller that passes the same cookie on
    a redelivery gets the processes of the earlier, dead delivery killed first.
    """
    home, tmpdir = scratch_dir / "home", scratch_dir / "tmp"
    for directory in (home, tmpdir):
        directory.mkdir(parents=True, exist_ok=True)
    junit_path, log_path = scratch_dir / "junit.xml", scratch_dir / "output.log"
    if cookie is None:
        cookie = uuid.uuid4().hex
    else:
        proctree.sweep(cookie)  # what an earlier, dead delivery of this job left running
    command = (
        python,
        "-m",
        "pytest",
        target,
        "-q",
        f"--junitxml={junit_path}",
        "-p",
        "no:cacheprovider",
    )
    env = suite_environment(os.environ, home=home, tmpdir=tmpdir, cookie=cookie, extra=extra_env)
    started = time.monotonic()
    with log_path.open("wb") as log:
        try:
            process = subprocess.Popen(
                command,
                cwd=worktree,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                # Pool processes run one job and no threads, so a pre-exec hook is safe.
                preexec_fn=(limits or SuiteLimits()).apply,  # noqa: PLW1509
            )
        except OSError as exc:
            logger.error("suite could not be started in %s (%s): %s", worktree, command[0], exc)
            return SuiteRun(
                command,
                None,
                False,
                f"{type(exc).__name__}: {exc}",
                time.monotonic() - started,
                "",
                0,
                None,
            )
        logger.info("suite started in %s: pid %d, timeout %ss", worktree, process.pid, timeout_s)
        exit_code, timed_out = _wait(process, cookie, timeout_s, kill_grace_s, tree_kill)
    duration = time.monotonic() - started
    leftovers = proctree.sweep(cookie) if tree_kill else 0
    tail, size = read_tail(log_path, tail_bytes)
    return SuiteRun(
        command,
        exit_code,
        timed_out,
        None,
        duration,
        tail,
        size,
        _read_junit(junit_path),
        leftovers,
    )


def _wait(
    process: subprocess.Popen[bytes],
    cookie: str,
    timeout_s: float,
    kill_grace_s: float,
    tree_kill: bool,
) -> tuple[int | None, bool]:
    try:
        return process.wait(timeout=timeout_s), False
    except subprocess.TimeoutExpired:
        pass
    signalled = proctree.kill_job(cookie, process.pid, grace_s=kill_grace_s, tree=tree_kill)
    logger.warning(
        "suite pid %d timed out after %ss: %d process(es) killed", process.pid, timeout_s, signalled
    )
    try:
        process.wait(timeout=_REAP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logger.error("suite pid %d did not die after SIGKILL", process.pid)
    return None, True


def _read_junit(path: Path) -> JunitSummary | None:
    try:
        return parse_junit(path.read_bytes())
    except OSError:
        return None
