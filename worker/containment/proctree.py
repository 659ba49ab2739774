"""Find and kill every process that belongs to one job (Linux, /proc).

A job's processes are the descendants of the suite's root process, the members of its
process group, and every process whose environment carries the job's cookie. The
cookie finds what escaped the tree: a child that started its own session, or a daemon
that double-forked and was re-parented away (the approach of Jenkins' process-tree
killer).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger("testgate.proctree")

COOKIE_VAR = "GATE_JOB_COOKIE"
_PROC = Path("/proc")
_KILL_ROUNDS = 20


def job_processes(cookie: str, root_pid: int | None = None) -> set[int]:
    """Live (non-zombie) processes of the job, never this process or its ancestors."""
    table = _process_table()
    found: set[int] = set()
    marker = f"{COOKIE_VAR}={cookie}".encode()
    # The suite leads its own session, so its process group id is its pid; that still
    # finds the group after the leader itself has exited.
    for pid, (_ppid, pgid, _state) in table.items():
        if (root_pid is not None and pgid == root_pid) or marker in _environ(pid).split(b"\0"):
            found.add(pid)
    if root_pid is not None and root_pid in table:
        found |= _descendants(root_pid, table) | {root_pid}
    return {pid for pid in found if table.get(pid, (0, 0, "Z"))[2] != "Z"} - _protected(table)


def kill_job(cookie: str, root_pid: int | None, *, grace_s: float, tree: bool) -> int:
    """SIGTERM the job, wait up to `grace_s` for it to go, SIGKILL what is left, and
    repeat until nothing of it runs (bounded). Returns how many processes were signalled.
    With `tree=False` only the root's process group is signalled."""

    def targets() -> set[int]:
        if tree:
            return job_processes(cookie, root_pid)
        return _group_members(root_pid)

    signalled = _signal_all(targets(), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and targets():
        time.sleep(0.05)
    return len(signalled | kill_until_gone(targets))


def sweep(cookie: str) -> int:
    """SIGKILL every process still carrying the cookie (after a normal exit)."""
    killed = kill_until_gone(lambda: job_processes(cookie))
    if killed:
        logger.warning("job %s left %d process(es) behind; killed", cookie, len(killed))
    return len(killed)


def kill_until_gone(find: Callable[[], set[int]], rounds: int = _KILL_ROUNDS) -> set[int]:
    """SIGKILL what `find` returns, again and again until it returns nothing (what was
    killed may have forked meanwhile), at most `rounds` times. Returns every pid killed."""
    killed: set[int] = set()
    left: set[int] = set()
    for _ in range(rounds):
        left = find()
        if not left:
            break
        killed |= _signal_all(left, signal.SIGKILL)
        time.sleep(0.02)  # let the kernel deliver before the next look
    else:
        logger.error("processes still alive after %d kill rounds: %s", rounds, sorted(left))
    return killed


def live_descendants(root: int) -> set[int]:
    """The live (non-zombie) descendants of `root`, never this process or its ancestors."""
    table = _process_table()
    found = _descendants(root, table) - _protected(table)
    return {pid for pid in found if table[pid][2] != "Z"}


def children_of(parent: int) -> set[int]:
    """The children of `parent`, zombies included."""
    return {pid for pid, (ppid, _, _) in _process_table().items() if ppid == parent}


def _signal_all(pids: set[int], sig: signal.Signals) -> set[int]:
    sent = set()
    for pid in pids:
        try:
            os.kill(pid, sig)
            sent.add(pid)
        except ProcessLookupError:
            pass  # exited between the scan and the signal
        except PermissionError as exc:
            logger.warning("cannot signal %d: %s", pid, exc)
    return sent


def _group_members(root_pid: int | None) -> set[int]:
    if root_pid is None:
        return set()
    table = _process_table()
    members = {p for p, (_, pgid, state) in table.items() if pgid == root_pid and state != "Z"}
    return members - _protected(table)


def _process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, state) for every process we can read."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # vanished or unreadable: not ours to kill anyway
        # comm (field 2) may contain spaces and parentheses: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _environ(pid: int) -> bytes:
    try:
        return (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return b""


def _descendants(root: int, table: dict[int, tuple[int, int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _protected(table: dict[int, tuple[int, int, str]]) -> set[int]:
    """This process and its ancestors: a job must never take its worker down."""
    protected = set()
    pid = os.getpid()
    while pid > 0 and pid not in protected:
        protected.add(pid)
        pid = table.get(pid, (0, 0, ""))[0]
    return protected
