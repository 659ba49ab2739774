"""CPU time the worker itself spends per job, apart from the suite it runs.

The worker is sampled idle, before and after `jobs` one-test jobs sent one at a time:
its main and pool processes' own time is the worker's cost; their reaped children
(pytest, git, prlimit) are reported apart. The idle rate is measured too, so a reader
can tell the per-job cost from the background (heartbeats, broker polling).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.common import BenchError, TimedOrchestrator
from bench.procstat import WorkerCpu, read_worker_cpu
from testkit.fleet import WorkerProcess


@dataclass(frozen=True)
class CpuResult:
    jobs: int
    window_s: float  # wall time of the jobs' window
    during: WorkerCpu  # CPU seconds spent during the window
    idle_s: float
    idle: WorkerCpu  # CPU seconds spent while idle for idle_s

    @property
    def worker_ms_per_job(self) -> float:
        return self.during.own_s / self.jobs * 1000

    @property
    def main_ms_per_job(self) -> float:
        return self.during.main_s / self.jobs * 1000

    @property
    def pool_ms_per_job(self) -> float:
        return self.during.pool_s / self.jobs * 1000

    @property
    def children_ms_per_job(self) -> float:
        return self.during.children_s / self.jobs * 1000

    @property
    def idle_ms_per_s(self) -> float:
        return self.idle.own_s / self.idle_s * 1000 if self.idle_s > 0 else 0.0


def measure_worker_cpu(
    worker: WorkerProcess,
    orchestrator: TimedOrchestrator,
    branch: str,
    jobs: int,
    idle_s: float = 5.0,
) -> CpuResult:
    """Needs an idle, warm worker; raises BenchError if a pool process was replaced
    (its time would silently move from `pool` to `children`)."""
    pid = worker.process.pid
    orchestrator.settle()
    idle_start = read_worker_cpu(pid)
    time.sleep(idle_s)
    before = read_worker_cpu(pid)
    started = time.perf_counter()
    orchestrator.run_serial(branch, jobs)
    orchestrator.settle()
    window = time.perf_counter() - started
    after = read_worker_cpu(pid)
    if not idle_start.pool_pids == before.pool_pids == after.pool_pids:
        raise BenchError(f"pool processes changed: {before.pool_pids} -> {after.pool_pids}")
    return CpuResult(
        jobs=jobs,
        window_s=window,
        during=after.since(before),
        idle_s=idle_s,
        idle=before.since(idle_start),
    )


def describe(result: CpuResult) -> str:
    return (
        f"worker CPU per job: {result.worker_ms_per_job:.1f} ms "
        f"(main {result.main_ms_per_job:.1f} + pool {result.pool_ms_per_job:.1f}); "
        f"its child processes (pytest, git): {result.children_ms_per_job:.0f} ms per job; "
        f"idle: {result.idle_ms_per_s:.1f} ms CPU per s"
    )
