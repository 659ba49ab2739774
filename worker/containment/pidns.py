"""A PID namespace seen from outside it (Linux /proc): the pids a process has in each
namespace it is in, and which outer process is the one a namespace calls `n`.

The processes in a namespace report their own pids, which mean nothing outside; the
worker waits for and kills processes by their outer pids only.
"""

from __future__ import annotations

from pathlib import Path

from worker.containment import proctree

_PROC = Path("/proc")


def ns_pids(pid: int) -> tuple[int, ...]:
    """The pid of `pid` in each PID namespace it is in, outermost first (the `NSpid`
    line of its status); () when it is gone."""
    try:
        status = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return ()
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return tuple(int(field) for field in line.split()[1:])
    return ()


def child_by_inner_pid(parent: int, inner: int) -> int | None:
    """The outer pid of the child of `parent` whose pid in its innermost namespace is
    `inner`, or None when there is none (a zombie counts: it is not reaped yet)."""
    for child in proctree.children_of(parent):
        chain = ns_pids(child)
        if chain and chain[-1] == inner:
            return child
    return None


def descendant_by_inner_pid(root: int, inner: int) -> int | None:
    """Like child_by_inner_pid, at any depth below `root`."""
    for pid in sorted(proctree.live_descendants(root)):
        chain = ns_pids(pid)
        if len(chain) > 1 and chain[-1] == inner:
            return pid
    return None
