"""End-to-end latency of a one-test job (enqueue -> advance received) against bare
`python -m pytest` on the same suite, on this machine, with a real worker and Redis.

    .venv/bin/python -m bench.latency --runs 10
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass

from bench.common import (
    BenchRepo,
    PytestRun,
    TimedOrchestrator,
    add_broker_args,
    bare_pytest,
    bench_session,
    make_bench_repo,
    running_worker,
)

ONE_TEST = {"tests/test_one.py": "def test_one():\n    assert 1 + 1 == 2\n"}


@dataclass(frozen=True)
class LatencyResult:
    bare: list[PytestRun]
    gate_s: list[float]

    @property
    def bare_ms(self) -> float:
        return statistics.median(r.wall_s for r in self.bare) * 1000

    @property
    def bare_cpu_ms(self) -> float:
        return statistics.median(r.cpu_s for r in self.bare) * 1000

    @property
    def gate_ms(self) -> float:
        return statistics.median(self.gate_s) * 1000

    @property
    def overhead_ms(self) -> float:
        return self.gate_ms - self.bare_ms

    @property
    def ratio(self) -> float:
        return self.gate_ms / self.bare_ms


def measure_latency(repo: BenchRepo, orchestrator: TimedOrchestrator, runs: int) -> LatencyResult:
    """Needs a running worker whose mirror is warm (one job done before)."""
    bare = bare_pytest(repo.checkout, runs)
    gate = orchestrator.run_serial(repo.branches[0], runs)
    return LatencyResult(bare, gate)


def describe(result: LatencyResult) -> str:
    runs = len(result.gate_s)
    return "\n".join(
        [
            f"runs: {runs} each, machine: {os.cpu_count()} cores",
            f"bare pytest median: {result.bare_ms:.0f} ms "
            f"(min {min(r.wall_s for r in result.bare) * 1000:.0f})",
            f"testgate job median (enqueue -> advance received): {result.gate_ms:.0f} ms "
            f"(min {min(result.gate_s) * 1000:.0f})",
            f"overhead: {result.overhead_ms:.0f} ms, ratio {result.ratio:.2f}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    add_broker_args(parser)
    args = parser.parse_args()
    with bench_session(args) as (broker, root, orchestrator):
        repo = make_bench_repo(root, ONE_TEST)
        with running_worker(root, broker, orchestrator.app):
            # Warm-up: the mirror is cloned once, as on a long-lived worker.
            orchestrator.run_serial(repo.branches[0], 1)
            result = measure_latency(repo, orchestrator, args.runs)
    print(describe(result))


if __name__ == "__main__":
    main()
