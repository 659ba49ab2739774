"""Every benchmark in one run; the results as a Markdown table on stdout.

    .venv/bin/python -m bench                              # print only
    .venv/bin/python -m bench --write docs/benchmarks.md   # and update the doc's block

(a) one-test job latency and (b) the worker's CPU per job, on one `-c 1` worker;
(d) the I/O-bound suite by bare pytest and by pytest-xdist; (c) throughput and scaling
with 1, 4 and 8 pool processes on that suite; then bench.sharding (one suite sharded over
the fleet against the same suite as one job, and a first run of an uneven suite), then
bench.time_to_fail (400 tests, the last failing: a second run with the failing test
first), bench.insuite (the gate's command against bare pytest on 500 tests with 10,000
subtests, and through a worker) and bench.venv_job (a one-test job whose contract names
a venv, warm and cold, against bare pytest in that venv, without and with plugins).
Progress goes to stderr. Only Redis DB 12 is used, flushed at start and end. About 14
minutes on 2 cores by default (bench.sharding alone: 397-405 s on 2026-12-03).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from bench import cpu, insuite, latency, sharding, time_to_fail, venv_job
from bench.common import (
    BENCH_DB,
    REDIS_URL,
    SUITE_ENVS,
    TimedOrchestrator,
    broker_url,
    flush,
    make_bench_repo,
    running_worker,
)
from bench.procstat import own_tree_cpu_s, read_system_cpu
from bench.scaling import io_bound_suite, measure_scaling
from bench.summary import Machine, Results, SuiteVariant, render, replace_block
from bench.xdist import measure_xdist


def _suite_plugins(text: str) -> list[str]:
    names = text.split(",")
    unknown = [name for name in names if name not in SUITE_ENVS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(SUITE_ENVS)}")
    return names


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="latency runs (a)")
    parser.add_argument("--cpu-jobs", type=int, default=20, help="jobs for worker CPU (b)")
    parser.add_argument("--jobs", type=int, default=16, help="jobs per scaling run (c)")
    parser.add_argument(
        "--workers",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[1, 4, 8],
        help="pool processes per scaling run, comma-separated (c)",
    )
    parser.add_argument("--io-tests", type=int, default=4, help="tests of the I/O-bound suite")
    parser.add_argument("--io-sleep", type=float, default=0.3, help="seconds each test sleeps")
    parser.add_argument(
        "--suite-plugins",
        type=_suite_plugins,
        default=list(SUITE_ENVS),
        help="pytest plugins of the I/O-bound suite: installed, none, or both (c, d)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="batches per worker count > 1, median kept (c)"
    )
    parser.add_argument("--suite-runs", type=int, default=3, help="bare/xdist runs (d)")
    parser.add_argument("--redis", default=REDIS_URL)
    parser.add_argument("--db", type=int, default=BENCH_DB)
    parser.add_argument("--write", type=Path, help="replace the generated block of this file")
    parser.add_argument(
        "--skip-sharding", action="store_true", help="leave out bench.sharding (about 10 min)"
    )
    parser.add_argument(
        "--skip-time-to-fail",
        action="store_true",
        help="leave out bench.time_to_fail (about 1.5 min)",
    )
    parser.add_argument(
        "--skip-insuite", action="store_true", help="leave out bench.insuite (about 3 min)"
    )
    parser.add_argument(
        "--skip-venv-job", action="store_true", help="leave out bench.venv_job (about 2 min)"
    )
    return parser.parse_args(argv)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def _measure_io_variant(
    args: argparse.Namespace,
    broker: str,
    orchestrator: TimedOrchestrator,
    root: Path,
    name: str,
) -> SuiteVariant:
    """(d) then (c) on the I/O-bound suite, with the suite environment `name`."""
    root.mkdir()
    suite_env = SUITE_ENVS[name]
    repo = make_bench_repo(root, io_bound_suite(args.io_tests, args.io_sleep), args.jobs)
    progress(f"(d) I/O-bound suite, plugins {name}: bare pytest and pytest-xdist")
    xd = measure_xdist(repo.checkout, args.suite_runs, suite_env=suite_env)
    progress(f"  bare {xd.bare_s:.2f} s, xdist -n {xd.workers} {xd.xdist_s:.2f} s")
    progress(f"(c) scaling, plugins {name}: {args.jobs} jobs at once, workers {args.workers}")
    scaling = measure_scaling(
        root,
        broker,
        repo,
        orchestrator,
        bare_one_s=xd.bare_s,
        workers=args.workers,
        jobs=args.jobs,
        serial_runs=args.suite_runs,
        repeats=args.repeats,
        suite_env=suite_env,
    )
    return SuiteVariant(name, scaling, xd)


def run_all(args: argparse.Namespace, broker: str, command: str) -> Results:
    load_before = os.getloadavg()
    system_before, own_before = read_system_cpu(), own_tree_cpu_s()
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp_name,
        TimedOrchestrator.connect(broker) as orchestrator,
    ):
        tmp = Path(tmp_name)
        (tmp / "one").mkdir()
        one = make_bench_repo(tmp / "one", latency.ONE_TEST)
        with running_worker(tmp / "one", broker, orchestrator.app) as worker:
            orchestrator.run_serial(one.branches[0], 1)  # warm-up: clones the mirror
            progress(f"(a) latency, {args.runs} runs each")
            lat = latency.measure_latency(one, orchestrator, args.runs)
            progress(latency.describe(lat))
            progress(f"(b) worker CPU, {args.cpu_jobs} jobs")
            cpu_result = cpu.measure_worker_cpu(
                worker, orchestrator, one.branches[0], args.cpu_jobs
            )
            progress(cpu.describe(cpu_result))
        cold_env = {"TESTGATE_WARM_PYTEST": "false"}
        with running_worker(tmp / "one", broker, orchestrator.app, extra_env=cold_env):
            orchestrator.run_serial(one.branches[0], 1)
            progress(f"(a) latency with cold pytest starts, {args.runs} runs each")
            lat_cold = latency.measure_latency(one, orchestrator, args.runs)
            progress(latency.describe(lat_cold))
        variants = [
            _measure_io_variant(args, broker, orchestrator, tmp / f"io-{name}", name)
            for name in args.suite_plugins
        ]
    # Every worker has been stopped and waited for here, so its whole tree is counted.
    own_s = own_tree_cpu_s() - own_before
    other_s = read_system_cpu().busy_s_since(system_before) - own_s
    wall_s = time.perf_counter() - started
    redis_version = str(redis.Redis.from_url(broker).info("server")["redis_version"])
    machine = Machine(
        date=datetime.date.today().isoformat(),
        cores=os.cpu_count() or 1,
        memory_gib=_memory_gib(),
        python=platform.python_version(),
        redis=redis_version,
        load_before=load_before,
        load_after=os.getloadavg(),
        wall_s=wall_s,
        own_cpu_s=own_s,
        other_cpu_s=max(other_s, 0.0),
    )
    return Results(
        machine=machine,
        command=command,
        io_tests=args.io_tests,
        io_sleep_s=args.io_sleep,
        latency=lat,
        latency_cold=lat_cold,
        cpu=cpu_result,
        variants=variants,
    )


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    broker = broker_url(args.redis, args.db)
    flush(broker)
    try:
        results = run_all(args, broker, " ".join([".venv/bin/python -m bench", *argv]))
    finally:
        flush(broker)
    block = render(results)
    print(block, end="")
    if args.write:
        args.write.write_text(replace_block(args.write.read_text(), block))
        progress(f"wrote the results into {args.write}")
    if not args.skip_sharding:
        sharding_argv = [f"--redis={args.redis}", f"--db={args.db}"]
        sharding.main([*sharding_argv, *([f"--write={args.write}"] if args.write else [])])
    if not args.skip_time_to_fail:
        ttf_argv = [f"--redis={args.redis}", f"--db={args.db}"]
        time_to_fail.main([*ttf_argv, *([f"--write={args.write}"] if args.write else [])])
    if not args.skip_insuite:
        insuite.main(["--runs", "5", "--jobs", "3"])
    if not args.skip_venv_job:
        venv_job.main(["--runs", "5"])


if __name__ == "__main__":
    main()
