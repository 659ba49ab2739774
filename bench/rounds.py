"""Where a scaling round's time goes: the phases of the I/O-bound suite's jobs timed from
their spans, alone (one job at a time, the scaling ideal's unit) and `jobs` at once on
the same `-c N` worker, plus the pool's slot time outside any task.

Each job's spans (the Celery task's, `testgate.job` and its phases) arrive at an OTLP
receiver on 127.0.0.1 with their start and end times. A phase that takes longer at once
than alone is where the batch loses its time; `n x wall - sum of the task spans` is
slot time no task held (dispatch, ack, the next message's fetch).

    .venv/bin/python -m bench.rounds --workers 4 --batches 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bench.common import SUITE_ENVS, add_broker_args, bench_session, make_bench_repo, running_worker
from bench.procstat import read_system_cpu, read_worker_cpu
from bench.scaling import efficiency, ideal_wall_s, io_bound_suite
from tests.otlp import Collector, ReceivedSpan, otlp_receiver

TASK_SPAN = "run/testgate.run_test_gate"
ROOT_SPAN = "testgate.job"
EXPORT_WAIT_S = 10.0


@dataclass(frozen=True)
class PhaseRow:
    name: str
    alone_ms: float  # median per job
    at_once_ms: float

    @property
    def added_ms(self) -> float:
        return self.at_once_ms - self.alone_ms


def per_job_ms(spans: Iterable[ReceivedSpan]) -> dict[str, list[float]]:
    """Each span name's time per job (a phase that happens twice in a job, as announce
    may, is summed within its trace), in ms."""
    per_trace: dict[tuple[str, str], float] = defaultdict(float)
    for span in spans:
        per_trace[(span.name, span.trace_id)] += span.duration_s * 1000
    found: dict[str, list[float]] = defaultdict(list)
    for (name, _), ms in per_trace.items():
        found[name].append(ms)
    return dict(found)


def phase_rows(alone: Iterable[ReceivedSpan], at_once: Iterable[ReceivedSpan]) -> list[PhaseRow]:
    """One row a span name seen in both, the longest at once first."""
    a, b = per_job_ms(alone), per_job_ms(at_once)
    rows = [
        PhaseRow(name, statistics.median(a[name]), statistics.median(b[name]))
        for name in a.keys() & b.keys()
    ]
    return sorted(rows, key=lambda row: -row.at_once_ms)


def slot_time_outside_tasks_s(spans: Sequence[ReceivedSpan], workers: int) -> float:
    """Pool slot time between the first task's start and the last one's end that no
    task span covered."""
    tasks = [s for s in spans if s.name == TASK_SPAN]
    if not tasks:
        return 0.0
    window = (max(s.end_ns for s in tasks) - min(s.start_ns for s in tasks)) / 1e9
    return workers * window - sum(s.duration_s for s in tasks)


@dataclass(frozen=True)
class Observed:
    spans: list[ReceivedSpan]
    wall_s: float
    worker_cpu_s: float
    busy: float


def _collect(collector: Collector, seen: int, jobs: int) -> list[ReceivedSpan]:
    """The spans of the `jobs` roots sent after the first `seen` spans, once exported."""
    deadline = time.monotonic() + EXPORT_WAIT_S
    while True:
        fresh = collector.snapshot()[seen:]
        roots = {s.trace_id for s in fresh if s.name == ROOT_SPAN}
        if len(roots) >= jobs or time.monotonic() > deadline:
            return [s for s in fresh if s.trace_id in roots]
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=16, help="jobs per batch")
    parser.add_argument("--alone", type=int, default=6, help="jobs one at a time")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--plugins", choices=sorted(SUITE_ENVS), default="installed")
    add_broker_args(parser)
    args = parser.parse_args()
    with (
        bench_session(args, prefix="bench-rounds-") as (broker, root, orchestrator),
        otlp_receiver() as (endpoint, collector),
    ):
        repo = make_bench_repo(root, io_bound_suite(), args.jobs)
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
        with running_worker(
            root, broker, orchestrator.app, args.workers, SUITE_ENVS[args.plugins], traced
        ) as worker:
            orchestrator.run_batch(repo.branches, args.jobs)  # warm: mirror, pools
            orchestrator.settle()

            def observe(sent: int, send_and_wait: Callable[[], object]) -> Observed:
                seen = len(collector.snapshot())
                cpu, system = read_worker_cpu(worker.process.pid), read_system_cpu()
                started = time.perf_counter()
                send_and_wait()
                wall = time.perf_counter() - started
                busy = read_system_cpu().busy_fraction_since(system)
                orchestrator.settle()
                used = read_worker_cpu(worker.process.pid).since(cpu)
                spans = _collect(collector, seen, sent)
                return Observed(spans, wall, used.own_s + used.children_s, busy)

            alone = observe(
                args.alone, lambda: orchestrator.run_serial(repo.branches[0], args.alone)
            )
            at_once = [
                observe(args.jobs, lambda: orchestrator.run_batch(repo.branches, args.jobs))
                for _ in range(args.batches)
            ]
    _print(args, alone, at_once)


def _print(args: argparse.Namespace, alone: Observed, at_once: Sequence[Observed]) -> None:
    spans = [s for batch in at_once for s in batch.spans]
    jobs_at_once = args.jobs * len(at_once)
    one_job_s = alone.wall_s / args.alone
    print(
        f"I/O-bound suite, plugins {args.plugins}, worker -c {args.workers}: "
        f"{args.alone} jobs alone, {len(at_once)} batches of {args.jobs}"
    )
    print(
        f"alone: {one_job_s * 1000:.0f} ms a job (enqueue to advance), "
        f"{alone.worker_cpu_s / args.alone * 1000:.0f} ms CPU a job"
    )
    ideal = ideal_wall_s(args.jobs, args.workers, one_job_s)
    for number, batch in enumerate(at_once, 1):
        outside = slot_time_outside_tasks_s(batch.spans, args.workers)
        print(
            f"batch {number}: {batch.wall_s:.2f} s (ideal {ideal:.2f}, efficiency "
            f"{efficiency(ideal, batch.wall_s):.2f}), CPU busy {batch.busy:.0%}, "
            f"{batch.worker_cpu_s / args.jobs * 1000:.0f} ms CPU a job, "
            f"slot time outside tasks {outside:.2f} s"
        )
    print(f"{'span':<34} {'alone ms':>9} {'at once ms':>11} {'added':>7}")
    for row in phase_rows(alone.spans, spans):
        print(f"{row.name:<34} {row.alone_ms:>9.1f} {row.at_once_ms:>11.1f} {row.added_ms:>+7.1f}")
    print(f"(medians per job; {args.alone} jobs alone, {jobs_at_once} at once)")


if __name__ == "__main__":
    main()
