"""A pids cgroup per job, where the kernel offers one we may write (root, cgroup v1 or a
delegated v2 subtree).

It does what the cookie and the process tree cannot: `pids.max` stops a fork bomb even
when the worker runs as root (RLIMIT_NPROC does not apply to root), and membership is
inherited by every process the job starts, so a daemon that cleared its environment and
re-parented itself away is still found and killed. Where no such cgroup exists, the
cookie sweep and the pool process as child subreaper (worker/containment/subreaper.py) remain.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.containment import proctree

logger = logging.getLogger("testgate.jobcgroup")

_KILL_ROUNDS = 50
_PARENT_NAME = "testgate"
# Moves the wrapper shell into the cgroup, then execs the command in place; a failed
# move exits 126, which the sandbox reads as "could not start", never as a test failure.
_ENTER_SCRIPT = 'echo $$ > "$0" || exit 126; exec "$@"'


@dataclass(frozen=True)
class PidsHierarchy:
    """Where this process's pids cgroup lives, and which cgroup version it is."""

    own_cgroup: Path
    version: int


@dataclass(frozen=True)
class JobCgroup:
    path: Path
    max_pids: int

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def enter_prefix(self) -> list[str]:
        """Put before a command so that it starts inside this cgroup."""
        return ["/bin/sh", "-c", _ENTER_SCRIPT, str(self.procs_file)]

    def members(self) -> set[int]:
        try:
            return {int(line) for line in self.procs_file.read_text().split()}
        except (OSError, ValueError):
            return set()

    def limit_hits(self) -> int:
        """How many forks in the group failed because of `pids.max` so far."""
        try:
            events = (self.path / "pids.events").read_text().split()
        except OSError:
            return 0
        counts = dict(zip(events[::2], events[1::2], strict=False))
        return int(counts.get("max", "0"))

    def kill_all(self) -> int:
        """SIGKILL every member until none is left (bounded). Returns how many were killed."""
        killed = proctree.kill_until_gone(lambda: self.members() - {os.getpid()}, _KILL_ROUNDS)
        if self.members() - {os.getpid()}:
            logger.error("cgroup %s: members still alive after the kill rounds", self.path)
        return len(killed)

    def remove(self) -> None:
        """Kill what is left and delete the cgroup; a cgroup that stays is only logged."""
        self.kill_all()
        for _ in range(_KILL_ROUNDS):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # members that exited are released asynchronously
                time.sleep(0.01)
        logger.error("cgroup %s could not be removed", self.path)


def pids_limit_note(max_pids: int) -> str:
    """What the report says of a suite that reached its pids limit."""
    return (
        f"the suite reached its limit of {max_pids} processes "
        "(TESTGATE_SUITE_MAX_PIDS): a fork bomb or runaway process spawning; "
        "forks beyond it failed"
    )


def remove_stale_cgroups(prefix: str, stale: Callable[[str], bool]) -> None:
    """Remove the empty job cgroups named `prefix...` that `stale` says nobody owns."""
    hierarchy = _own_pids_hierarchy()
    if hierarchy is None:
        return
    try:
        candidates = list((hierarchy.own_cgroup / _PARENT_NAME).glob(f"{prefix}*"))
    except OSError:
        return
    for path in candidates:
        if stale(path.name):
            try:
                path.rmdir()  # fails, and is left, while it has members
            except OSError as exc:
                logger.debug("stale cgroup %s kept: %s", path, exc)


def _own_pids_hierarchy() -> PidsHierarchy | None:
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        return find_pids_hierarchy(mountinfo, Path("/proc/self/cgroup").read_text())
    except OSError:
        return None


def find_pids_hierarchy(
    mountinfo: str, proc_cgroup: str, sys_root: Path = Path("/")
) -> PidsHierarchy | None:
    """Parse /proc/self/mountinfo and /proc/self/cgroup (pure, for tests)."""
    own_paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own_paths[controller] = path
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mount_point, fstype, super_options = fields[4], tail[0], tail[2].split(",")
        if fstype == "cgroup" and "pids" in super_options and "pids" in own_paths:
            own = own_paths["pids"].lstrip("/")
            return PidsHierarchy(sys_root / mount_point.lstrip("/") / own, 1)
        if fstype == "cgroup2" and "" in own_paths:
            own_cgroup = sys_root / mount_point.lstrip("/") / own_paths[""].lstrip("/")
            try:
                available = (own_cgroup / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if "pids" in available:
                return PidsHierarchy(own_cgroup, 2)
    return None


def open_job_cgroup(name: str, max_pids: int) -> JobCgroup | None:
    """The job's cgroup, created (or found again, after a dead delivery: its leftovers
    are killed first). None when no writable pids cgroup exists here."""
    if max_pids <= 0:
        return None
    hierarchy = _own_pids_hierarchy()
    if hierarchy is None:
        return None
    parent = hierarchy.own_cgroup / _PARENT_NAME
    try:
        parent.mkdir(exist_ok=True)
        if hierarchy.version == 2:
            (parent / "cgroup.subtree_control").write_text("+pids")
        path = parent / name
        path.mkdir(exist_ok=True)
        (path / "pids.max").write_text(str(max_pids))
    except OSError as exc:
        logger.info("no per-job pids cgroup (%s): cookie sweep and subreaper only", exc)
        return None
    group = JobCgroup(path, max_pids)
    if left := group.kill_all():
        logger.warning("cgroup %s: killed %d process(es) of an earlier delivery", name, left)
    return group
