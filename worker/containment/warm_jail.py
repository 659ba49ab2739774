"""Where a contained warm interpreter lives: a bubblewrap sandbox of its own, shared
by every suite it forks (worker/insuite/zygote.py --contained). It writes only the pool
process's slot (slot.py) and reads what the job's view reads (its repository's mirror,
its venv): one sandbox per such view, so no suite sees another repository, and a run
goes to it only when the job's own view asks for nothing more.

After each run every process of the sandbox but its init and the zygote is killed:
whatever a suite starts, also a daemon that cleared its environment and double-forked,
stays below the init of its PID namespace. The zygote empties the temp dirs itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from worker.containment import proctree
from worker.containment.bwrap import SuiteView, bwrap_prefix
from worker.containment.cgroup import JobCgroup

logger = logging.getLogger("testgate.warm_jail")

_INIT_PID, _ZYGOTE_PID = 1, 2  # bwrap's init and the command it runs, inside


@dataclass(frozen=True)
class WarmJail:
    """The sandbox of one contained warm interpreter."""

    slot: Path  # the only writable path
    readable: tuple[Path, ...]
    network: bool
    cgroup: JobCgroup | None = None  # a pids cgroup of its own, where there can be one

    def argv(self, python: str, script: str) -> list[str]:
        view = SuiteView(writable=(), readable=self.readable, network=self.network)
        enter = self.cgroup.enter_prefix() if self.cgroup else []
        return [*enter, *bwrap_prefix(view, self.slot), python, script, "--contained"]

    def refusal(self, view: SuiteView | None, paths: Iterable[Path]) -> str | None:
        """Why a run with the job's `view`, touching `paths` (its directory, log, HOME,
        TMPDIR...), cannot run in this sandbox; None when it can."""
        if view is None:
            return "an uncontained run"
        if view.network != self.network:
            return "the contract's network differs from the warm interpreter's"
        for path in (*view.writable, *paths):
            if not _under(path, (self.slot,)):
                return f"{path} is outside the warm interpreter's slot"
        for path in view.readable:
            if not _under(path, (*self.readable, self.slot)):
                return f"{path} is outside the warm interpreter's view"
        return None


class JailedProcesses:
    """The sandbox's init and zygote, found by their outer pids once the zygote is up."""

    def __init__(self, bwrap_pid: int) -> None:
        self.bwrap_pid = bwrap_pid
        self.init: int | None = None
        self.zygote: int | None = None

    def locate(self) -> bool:
        below = proctree.live_descendants(self.bwrap_pid)
        self.init = _by_inner_pid(below, _INIT_PID)
        self.zygote = _by_inner_pid(below, _ZYGOTE_PID)
        return self.init is not None and self.zygote is not None

    def outer_pid(self, inner: int) -> int | None:
        """The outer pid of the zygote's child `inner` (not reaped until we say so: a
        zombie counts)."""
        if self.zygote is None:
            return None
        return _by_inner_pid(proctree.children_of(self.zygote), inner)

    def strays(self) -> set[int]:
        """Every live process of the sandbox but its init and the zygote."""
        if self.init is None:
            return set()
        return proctree.live_descendants(self.init) - {self.zygote or -1}

    def kill_strays(self) -> int:
        """Kill what runs in the sandbox besides the zygote, until nothing does, and undo
        a SIGSTOP a suite may have sent the zygote. Returns how many were killed."""
        killed = proctree.kill_until_gone(self.strays)
        if self.zygote is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.zygote, signal.SIGCONT)
        if killed:
            logger.info("killed %d process(es) a warm contained run left", len(killed))
        return len(killed)


def _under(path: Path, roots: Iterable[Path]) -> bool:
    absolute = Path(os.path.abspath(path))
    return any(absolute.is_relative_to(os.path.abspath(root)) for root in roots)


def _by_inner_pid(pids: Iterable[int], inner: int) -> int | None:
    """The one of `pids` (outer pids, the only ones the worker waits for and kills) that
    is `inner` in the innermost of at least two PID namespaces: the `NSpid` line of its
    /proc status, outermost first."""
    for pid in sorted(pids):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # gone
        for line in status.splitlines():
            if line.startswith("NSpid:"):
                chain = line.split()[1:]
                if len(chain) > 1 and int(chain[-1]) == inner:
                    return pid
    return None
