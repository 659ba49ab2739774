"""Throughput and scaling efficiency of one worker with 1, 4, 8 pool processes on an
I/O-bound suite: M jobs enqueued at once, wall time until all M advances arrived.

ideal = ceil(M / N) x one job's latency (one worker, one job at a time);
efficiency = ideal / measured.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from bench.common import BenchRepo, TimedOrchestrator, bare_pytest, running_worker
from bench.procstat import read_system_cpu, read_worker_cpu
from testkit.fleet import WorkerProcess

# Each test sleeps: the suite waits on I/O, so N suites can overlap on few cores.
SLEEP_TEST = "import time\n\n\ndef test_waits_{i}():\n    time.sleep({sleep_s})\n"


def io_bound_suite(tests: int = 4, sleep_s: float = 0.3) -> dict[str, str]:
    return {
        f"tests/test_wait_{i}.py": SLEEP_TEST.format(i=i, sleep_s=sleep_s) for i in range(tests)
    }


def ideal_wall_s(jobs: int, workers: int, one_job_s: float) -> float:
    """N processes finish M equal jobs in ceil(M / N) rounds at best."""
    if jobs < 1 or workers < 1:
        raise ValueError(f"jobs and workers must be >= 1, got {jobs} and {workers}")
    return math.ceil(jobs / workers) * one_job_s


def efficiency(ideal_s: float, measured_s: float) -> float:
    if measured_s <= 0:
        raise ValueError(f"measured wall time must be > 0, got {measured_s}")
    return ideal_s / measured_s


@dataclass(frozen=True)
class BareParallel:
    """The control: the same jobs as bare pytest runs, as many at a time as workers.
    What it loses to the machine (cores, pytest's start-up) testgate cannot win back."""

    wall_s: float
    ideal_s: float

    @property
    def efficiency(self) -> float:
        return efficiency(self.ideal_s, self.wall_s)


@dataclass(frozen=True)
class ScalingRun:
    workers: int
    jobs: int
    wall_s: float
    ideal_s: float
    busy: float  # fraction of all CPUs busy (whole machine) during the run
    worker_cpu_s: float  # the worker's own processes
    children_cpu_s: float  # suites and git
    bare: BareParallel | None = None  # not measured for one worker
    walls_s: tuple[float, ...] = ()  # every repeat's wall time; this run is the median

    @property
    def efficiency(self) -> float:
        return efficiency(self.ideal_s, self.wall_s)

    @property
    def jobs_per_min(self) -> float:
        return self.jobs / self.wall_s * 60

    @property
    def cpu_per_job_s(self) -> float:
        return (self.worker_cpu_s + self.children_cpu_s) / self.jobs


Run = TypeVar("Run", BareParallel, ScalingRun)


@dataclass(frozen=True)
class ScalingResult:
    one_job_s: list[float]  # one worker, one job at a time
    runs: list[ScalingRun]

    @property
    def one_job_median_s(self) -> float:
        return statistics.median(self.one_job_s)


def median_run(runs: Sequence[Run]) -> Run:
    """The run with the median wall time (the lower one of an even count), so that
    its other numbers belong to the same run."""
    if not runs:
        raise ValueError("no runs")
    return sorted(runs, key=lambda run: run.wall_s)[(len(runs) - 1) // 2]


def parallel_pytest(
    checkout: Path,
    jobs: int,
    workers: int,
    one_run_s: float,
    suite_env: Mapping[str, str] | None = None,
) -> BareParallel:
    """`jobs` bare pytest runs of `checkout`, `workers` at a time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: bare_pytest(checkout, 1, suite_env=suite_env), range(jobs)))
    wall = time.perf_counter() - started
    return BareParallel(wall, ideal_wall_s(jobs, workers, one_run_s))


def measure_scaling(
    root: Path,
    broker: str,
    repo: BenchRepo,
    orchestrator: TimedOrchestrator,
    *,
    bare_one_s: float,
    workers: Sequence[int] = (1, 4, 8),
    jobs: int = 16,
    serial_runs: int = 3,
    repeats: int = 3,
    suite_env: Mapping[str, str] | None = None,
) -> ScalingResult:
    """One worker per concurrency, in increasing order; the single job's latency is
    measured first, on `-c 1`, since every ideal depends on it. `bare_one_s` is one
    bare pytest run of the suite, the control's ideal. With more than one worker each
    batch (and its control) runs `repeats` times and the median run is kept: a short
    batch is easily disturbed by anything else on the machine."""
    one_job: list[float] = []
    runs = []
    for n in sorted({1, *workers}):
        bare = None
        if n > 1 and n in workers:
            bare = median_run(
                [
                    parallel_pytest(repo.checkout, jobs, n, bare_one_s, suite_env)
                    for _ in range(repeats)
                ]
            )
        with running_worker(root, broker, orchestrator.app, n, suite_env) as worker:
            # Warm-up: the mirror (first time) and each pool process's first job.
            orchestrator.run_batch(repo.branches, n)
            orchestrator.settle()
            if n == 1:
                one_job = orchestrator.run_serial(repo.branches[0], serial_runs)
                orchestrator.settle()
            if n in workers:
                ideal = ideal_wall_s(jobs, n, statistics.median(one_job))
                batches = [
                    _batch(worker, n, orchestrator, repo, jobs, ideal, bare)
                    for _ in range(repeats if n > 1 else 1)
                ]
                walls = tuple(b.wall_s for b in batches)
                runs.append(replace(median_run(batches), walls_s=walls))
    return ScalingResult(one_job, runs)


def _batch(
    worker: WorkerProcess,
    n: int,
    orchestrator: TimedOrchestrator,
    repo: BenchRepo,
    jobs: int,
    ideal_s: float,
    bare: BareParallel | None,
) -> ScalingRun:
    """All `jobs` at once on an idle, warm worker with `n` pool processes."""
    cpu_before, system_before = read_worker_cpu(worker.process.pid), read_system_cpu()
    wall = orchestrator.run_batch(repo.branches, jobs)
    busy = read_system_cpu().busy_fraction_since(system_before)
    orchestrator.settle()
    used = read_worker_cpu(worker.process.pid).since(cpu_before)
    run = ScalingRun(n, jobs, wall, ideal_s, busy, used.own_s, used.children_s, bare)
    control = f", bare pytest control {bare.efficiency:.2f}" if bare else ""
    print(
        f"  {n} worker(s): {jobs} jobs in {wall:.2f} s, ideal {ideal_s:.2f} s, "
        f"efficiency {run.efficiency:.2f}{control}, CPU busy {busy:.0%}",
        file=sys.stderr,
        flush=True,
    )
    return run
