"""What tracing costs a one-test job: the end-to-end latency (enqueue -> advance
received) with traces off and on, on one real `-c 1` worker, and the in-process cost of
one job's spans measured alone (the end-to-end medians move by more than that between
runs on a shared 2-core machine). "On" exports every span over OTLP/HTTP to a receiver
on 127.0.0.1, as to a collector on the host. Off and on alternate in `--rounds` blocks
(a fresh worker each), so that the machine's drift over minutes falls on both.

    .venv/bin/python -m bench.tracing --runs 15 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

from bench.common import (
    TimedOrchestrator,
    add_broker_args,
    bench_session,
    make_bench_repo,
    running_worker,
)
from bench.latency import ONE_TEST
from testkit.otlp import otlp_receiver

JOB_PHASES = ("checkout", "setup", "suite", "smoke", "report", "push", "announce")


def serial_latency_ms(
    root: Path,
    broker: str,
    orchestrator: TimedOrchestrator,
    branch: str,
    runs: int,
    env: Mapping[str, str],
) -> list[float]:
    with running_worker(root, broker, orchestrator.app, extra_env=env):
        orchestrator.run_serial(branch, 2)  # warm: mirror cloned, pool process warm
        return [s * 1000 for s in orchestrator.run_serial(branch, runs)]


def spans_cost_ms(jobs: int, endpoint: str) -> tuple[float, float]:
    """CPU ms per job of a job's spans (root, queue wait, seven phases) with the SDK
    exporting to `endpoint`, and with the API's no-op; median of `jobs` jobs."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from worker.observe.phases import JobPhases

    def one_job() -> float:
        started = time.process_time()
        phases = JobPhases()
        with phases.job("testgate.job", attempt=0, repo="bench"):
            phases.waited(0.01)
            for name in JOB_PHASES:
                with phases.phase(name):
                    pass
            phases.conclude("code-pass", "PASS")
        return (time.process_time() - started) * 1000

    off = statistics.median(one_job() for _ in range(jobs))
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    on = statistics.median(one_job() for _ in range(jobs))
    provider.shutdown()
    return off, on


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15, help="jobs per variant, in all")
    parser.add_argument("--rounds", type=int, default=3, help="off/on blocks, alternated")
    add_broker_args(parser)
    args = parser.parse_args()
    with (
        bench_session(args) as (broker, root, orchestrator),
        otlp_receiver() as (endpoint, collector),
    ):
        branch = make_bench_repo(root, ONE_TEST).branches[0]
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "500"}
        per_block = max(1, -(-args.runs // max(1, args.rounds)))
        off: list[float] = []
        on: list[float] = []
        for _ in range(max(1, args.rounds)):
            off += serial_latency_ms(root, broker, orchestrator, branch, per_block, {})
            on += serial_latency_ms(root, broker, orchestrator, branch, per_block, traced)
        received = len(collector.snapshot())
        cost_off, cost_on = spans_cost_ms(200, endpoint)  # 2,000 spans: within the batch queue
    off_ms, on_ms = statistics.median(off), statistics.median(on)
    print(f"runs: {len(off)} each in {args.rounds} alternated blocks, {os.cpu_count()} cores")
    print(f"one-test job, traces off: median {off_ms:.1f} ms (min {min(off):.1f})")
    print(f"one-test job, traces on:  median {on_ms:.1f} ms (min {min(on):.1f})")
    print(f"difference of medians: {on_ms - off_ms:+.1f} ms; spans received: {received}")
    print(f"CPU of one job's spans in-process: {cost_on:.3f} ms on, {cost_off:.3f} ms off")


if __name__ == "__main__":
    main()
