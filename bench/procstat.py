"""CPU time from /proc: a worker's own processes apart from what they ran.

`/proc/<pid>/stat` gives a process's own time (utime + stime, all its threads) and,
separately, the time of its children that ended and were waited for (cutime +
cstime). For a worker the first is its cost; the second is the suite's pytest and
the git commands it ran, which are measured apart.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcCpu:
    """One process's line of /proc/<pid>/stat, in seconds."""

    pid: int
    ppid: int
    own_s: float  # utime + stime
    children_s: float  # cutime + cstime: reaped children only


def parse_stat(text: str, ticks_per_s: int = CLOCK_TICKS_PER_S) -> ProcCpu:
    """Parse /proc/<pid>/stat (proc(5)); the command name may hold spaces and ')'."""
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    # fields[0] is proc(5)'s field 3 (state); utime..cstime are fields 14..17.
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return ProcCpu(
        pid=int(head.split("(", 1)[0]),
        ppid=int(fields[1]),
        own_s=(utime + stime) / ticks_per_s,
        children_s=(cutime + cstime) / ticks_per_s,
    )


def read_proc_cpu(pid: int) -> ProcCpu:
    return parse_stat((PROC / str(pid) / "stat").read_text())


def live_processes() -> list[ProcCpu]:
    """Every process's line, from one scan of /proc."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found.append(parse_stat((entry / "stat").read_text()))
        except (OSError, ValueError, IndexError):
            continue  # ended while we looked, or not a process line
    return found


def children_of(pid: int) -> list[int]:
    """Live direct children of `pid`, from one scan of /proc."""
    return sorted(p.pid for p in live_processes() if p.ppid == pid)


def descendants(pid: int, processes: list[ProcCpu]) -> list[ProcCpu]:
    """The live processes below `pid` at any depth, `pid` itself not included."""
    below: dict[int, list[ProcCpu]] = {}
    for process in processes:
        below.setdefault(process.ppid, []).append(process)
    found: list[ProcCpu] = []
    pending = list(below.get(pid, []))
    while pending:
        process = pending.pop()
        found.append(process)
        pending.extend(below.get(process.pid, []))
    return found


@dataclass(frozen=True)
class WorkerCpu:
    """CPU seconds of a Celery worker: its main process, its pool processes, and the
    children of both (suites, git, the warm pytest interpreters and their suites)."""

    main_s: float
    pool_s: float
    children_s: float
    pool_pids: tuple[int, ...]

    @property
    def own_s(self) -> float:
        return self.main_s + self.pool_s

    def since(self, earlier: WorkerCpu) -> WorkerCpu:
        return WorkerCpu(
            main_s=self.main_s - earlier.main_s,
            pool_s=self.pool_s - earlier.pool_s,
            children_s=self.children_s - earlier.children_s,
            pool_pids=self.pool_pids,
        )


def read_worker_cpu(main_pid: int) -> WorkerCpu:
    """Sample when the worker is idle: a child still running is counted only once it
    has been reaped."""
    processes = live_processes()
    main = next(p for p in processes if p.pid == main_pid)
    pool = [p for p in processes if p.ppid == main_pid]
    # A pool process's warm pytest interpreter lives as long as the pool process, at any
    # depth below it (contained: under two bwrap processes): each live process below a
    # pool process is counted whole, its own time and what it reaped, alive.
    below = [d for p in pool for d in descendants(p.pid, processes)]
    return WorkerCpu(
        main_s=main.own_s,
        pool_s=sum(p.own_s for p in pool),
        children_s=main.children_s
        + sum(p.children_s for p in pool)
        + sum(d.own_s + d.children_s for d in below),
        pool_pids=tuple(sorted(p.pid for p in pool)),
    )


@dataclass(frozen=True)
class SystemCpu:
    """The machine's CPU time from the first line of /proc/stat, in ticks of all CPUs."""

    busy: int
    total: int

    def busy_s_since(self, earlier: SystemCpu, ticks_per_s: int = CLOCK_TICKS_PER_S) -> float:
        return (self.busy - earlier.busy) / ticks_per_s

    def busy_fraction_since(self, earlier: SystemCpu) -> float:
        total = self.total - earlier.total
        return (self.busy - earlier.busy) / total if total > 0 else 0.0


def parse_system_stat(text: str) -> SystemCpu:
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice]: guest time
    # is already inside user and nice, so only the first eight are summed.
    values = [int(v) for v in text.splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return SystemCpu(busy=sum(values) - idle, total=sum(values))


def read_system_cpu() -> SystemCpu:
    return parse_system_stat((PROC / "stat").read_text())


def own_tree_cpu_s() -> float:
    """CPU seconds of this process and of every descendant it has waited for (their
    own reaped children included): with the machine's busy time, what others used."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total
