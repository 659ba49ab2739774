"""The worker's pool process as a child subreaper (Linux prctl), the fallback where no
per-job cgroup can be made (a non-root container).

A process that daemonises (fork, setsid, fork, parent exits) is re-parented to the
nearest subreaper, not PID 1: to the pool process, found by its parent pid even if it
cleared its environment (and the job's cookie with it), killed and reaped after the job.
Only pids that were not children before the job are touched, and only once the job's
own subprocesses were waited for, so no `Popen` of ours loses its exit status.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
from pathlib import Path

from worker.containment.proctree import children_of

logger = logging.getLogger("testgate.subreaper")

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_PROC = Path("/proc")


def become_subreaper() -> bool:
    """Make this process a child subreaper; False where the kernel refuses."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        logger.warning("not a child subreaper (%s): daemonised leftovers go to PID 1", exc)
        return False
    return True


def is_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return flag.value != 0


def children() -> set[int]:
    """This process's children, zombies included: from each thread's `children` list
    (one small read per thread), or by a scan of /proc where the kernel has no such file."""
    try:
        found: set[int] = set()
        for task in (_PROC / "self" / "task").iterdir():
            found.update(int(pid) for pid in (task / "children").read_text().split())
    except (OSError, ValueError):
        return children_of(os.getpid())
    return found


def reap_adopted(before: set[int], rounds: int = 20) -> int:
    """Kill and reap every child that is not in `before` (a snapshot taken when the job
    started), again for what their death re-parents to us. Returns how many there were."""
    reaped: set[int] = set()
    for _ in range(rounds):
        adopted = children() - before
        if not adopted:
            break
        for pid in adopted:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in adopted:
            with contextlib.suppress(ChildProcessError):  # reaped already
                os.waitpid(pid, 0)
        reaped |= adopted
    if reaped:
        logger.warning("killed %d process(es) a job left behind (adopted)", len(reaped))
    return len(reaped)
