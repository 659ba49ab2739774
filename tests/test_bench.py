"""The benchmarks' pure parts: ideal and efficiency, /proc accounting, the Markdown
block. No timing goals here: those are measured by `python -m bench`, not asserted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import parse_args
from bench.common import SUITE_ENVS, PytestRun, worker_env
from bench.cpu import CpuResult
from bench.latency import LatencyResult
from bench.procstat import (
    WorkerCpu,
    own_tree_cpu_s,
    parse_stat,
    parse_system_stat,
    read_proc_cpu,
    read_worker_cpu,
)
from bench.scaling import (
    BareParallel,
    ScalingResult,
    ScalingRun,
    efficiency,
    ideal_wall_s,
    io_bound_suite,
    median_run,
)
from bench.summary import BEGIN, END, Machine, Results, SuiteVariant, render, replace_block
from bench.xdist import XdistResult
from worker.contracts import load_contracts
from worker.settings import Settings


def test_ideal_is_one_job_per_round_of_workers() -> None:
    assert ideal_wall_s(16, 1, 1.5) == 24.0
    assert ideal_wall_s(16, 4, 1.5) == 6.0
    assert ideal_wall_s(16, 8, 1.5) == 3.0
    # A last, partial round costs a whole job's time.
    assert ideal_wall_s(10, 4, 1.0) == 3.0
    assert ideal_wall_s(3, 8, 2.0) == 2.0


@pytest.mark.parametrize(("jobs", "workers"), [(0, 1), (1, 0)])
def test_ideal_refuses_no_jobs_or_no_workers(jobs: int, workers: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        ideal_wall_s(jobs, workers, 1.0)


def test_efficiency_is_ideal_over_measured() -> None:
    assert efficiency(6.0, 6.0) == 1.0
    assert efficiency(6.0, 7.5) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="> 0"):
        efficiency(6.0, 0.0)


def test_scaling_run_derives_efficiency_throughput_and_cpu_per_job() -> None:
    run = ScalingRun(
        workers=4, jobs=16, wall_s=8.0, ideal_s=7.2, busy=0.5, worker_cpu_s=1.6, children_cpu_s=8.0
    )
    assert run.efficiency == pytest.approx(0.9)
    assert run.jobs_per_min == pytest.approx(120.0)
    assert run.cpu_per_job_s == pytest.approx(0.6)


def test_median_run_keeps_one_whole_run() -> None:
    runs = [BareParallel(wall, 1.0) for wall in (5.0, 3.0, 4.0)]
    assert median_run(runs) is runs[2]
    # Of an even count, the lower middle: never a mix of two runs' numbers.
    assert median_run(runs[:2]).wall_s == 3.0
    with pytest.raises(ValueError, match="no runs"):
        median_run([])


def test_io_bound_suite_has_one_sleeping_test_per_file() -> None:
    suite = io_bound_suite(3, 0.25)
    assert sorted(suite) == [f"tests/test_wait_{i}.py" for i in range(3)]
    compile(suite["tests/test_wait_1.py"], "test_wait_1.py", "exec")
    assert "def test_waits_1():\n    time.sleep(0.25)" in suite["tests/test_wait_1.py"]


def test_parse_stat_reads_this_process() -> None:
    stat = read_proc_cpu(os.getpid())
    assert stat.pid == os.getpid()
    assert stat.ppid == os.getppid()
    assert stat.own_s >= 0
    assert stat.children_s >= 0


def test_own_time_grows_when_this_process_burns_cpu() -> None:
    before = read_proc_cpu(os.getpid()).own_s
    deadline = time.monotonic() + 10
    while read_proc_cpu(os.getpid()).own_s <= before and time.monotonic() < deadline:
        sum(range(10_000))
    assert read_proc_cpu(os.getpid()).own_s > before


def test_a_reaped_child_counts_as_children_not_own_time() -> None:
    before = read_proc_cpu(os.getpid())
    burn = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    after = read_proc_cpu(os.getpid())
    assert after.children_s - before.children_s >= 0.1


def test_own_tree_cpu_counts_waited_for_children() -> None:
    before = own_tree_cpu_s()
    burn = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    assert own_tree_cpu_s() - before >= 0.2


def test_parse_stat_survives_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S", "7", *["0"] * 9, "150", "50", "30", "20", *["0"] * 30]
    stat = parse_stat("4242 (evil) (name x) " + " ".join(fields), ticks_per_s=100)
    assert (stat.pid, stat.ppid) == (4242, 7)
    assert stat.own_s == pytest.approx(2.0)
    assert stat.children_s == pytest.approx(0.5)


def test_worker_cpu_lists_live_children_as_the_pool() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while child.pid not in read_worker_cpu(os.getpid()).pool_pids:
            assert time.monotonic() < deadline, "child never showed up in /proc"
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait()


BURNER = """
import pathlib, sys, time
started = time.process_time()
while time.process_time() - started < 0.3:
    pass
pathlib.Path(sys.argv[1]).write_text("burned")
time.sleep(60)
"""


def test_worker_cpu_counts_a_live_process_below_a_pool_process(tmp_path: Path) -> None:
    # As a contained warm interpreter lives under two bwrap processes of its pool
    # process: here this process is the worker, the child its pool process, and the
    # burner sits two levels below that.
    marker = tmp_path / "burned"
    command = [sys.executable, "-c", BURNER, str(marker)]
    for _ in range(2):
        command = [sys.executable, "-c", f"import subprocess\nsubprocess.run({command!r})\n"]
    before = read_worker_cpu(os.getpid()).children_s
    child = subprocess.Popen(command, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "the grandchild never burned its CPU"
            time.sleep(0.01)
        assert read_worker_cpu(os.getpid()).children_s - before >= 0.28
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def test_worker_cpu_since_subtracts_each_part() -> None:
    later = WorkerCpu(main_s=2.0, pool_s=5.0, children_s=9.0, pool_pids=(3,))
    earlier = WorkerCpu(main_s=1.5, pool_s=1.0, children_s=4.0, pool_pids=(3,))
    delta = later.since(earlier)
    assert (delta.main_s, delta.pool_s, delta.children_s) == (0.5, 4.0, 5.0)
    assert delta.own_s == 4.5


def test_system_cpu_busy_fraction_excludes_idle_and_iowait() -> None:
    before = parse_system_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    after = parse_system_stat("cpu  250 0 150 850 150 0 0 0 50 0\ncpu0 1 2 3 4\n")
    # busy +200 (user 150, system 50) of total +400; guest is inside user already.
    assert after.busy_fraction_since(before) == pytest.approx(0.5)
    assert before.busy_fraction_since(before) == 0.0
    assert after.busy_s_since(before, ticks_per_s=100) == pytest.approx(2.0)


def test_suite_env_reaches_the_worker_contract(tmp_path: Path) -> None:
    env = worker_env(tmp_path, "redis://127.0.0.1:6379/12", SUITE_ENVS["none"])
    settings = Settings(
        repos="bench", self_repo="bench", contracts_file=env["TESTGATE_CONTRACTS_FILE"]
    )
    contract = load_contracts(settings).for_repo("bench")
    assert contract is not None
    assert dict(contract.env) == {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert "TESTGATE_CONTRACTS_FILE" not in worker_env(tmp_path, "redis://x/12", {})


def test_cli_parses_worker_counts_and_rejects_unknown_plugin_sets() -> None:
    args = parse_args(["--workers", "1,4,8", "--suite-plugins", "none"])
    assert args.workers == [1, 4, 8]
    assert args.suite_plugins == ["none"]
    with pytest.raises(SystemExit):
        parse_args(["--suite-plugins", "some"])


def _results(wall_at_8: float) -> Results:
    runs = [
        ScalingRun(1, 16, 24.5, 24.0, 0.3, 0.4, 9.0),
        ScalingRun(4, 16, 6.4, 6.0, 0.9, 0.5, 9.5, BareParallel(6.0, 5.4)),
        ScalingRun(8, 16, wall_at_8, 3.0, 1.0, 0.6, 10.0, walls_s=(wall_at_8, 9.0, 4.5)),
    ]
    bare = [PytestRun(0.5, 0.45), PytestRun(0.6, 0.5)]
    variant = SuiteVariant(
        "installed",
        ScalingResult([1.5, 1.5, 1.6], runs),
        XdistResult(2, [PytestRun(1.4, 0.5)], [PytestRun(1.1, 1.0)]),
    )
    return Results(
        machine=Machine(
            "2026-01-01", 2, 24.0, "3.11.7", "7.0.15", (0.1,) * 3, (0.5,) * 3, 200.0, 150.0, 40.0
        ),
        command=".venv/bin/python -m bench",
        io_tests=4,
        io_sleep_s=0.3,
        latency=LatencyResult(bare, [0.6, 0.7]),
        cpu=CpuResult(
            jobs=10,
            window_s=7.0,
            during=WorkerCpu(0.05, 0.2, 6.0, (1,)),
            idle_s=3.0,
            idle=WorkerCpu(0.0, 0.0, 0.0, (1,)),
        ),
        variants=[variant],
    )


def test_render_states_each_goal_and_whether_it_was_met() -> None:
    text = render(_results(wall_at_8=5.0))
    assert text.startswith(BEGIN)
    assert text.rstrip().endswith(END)
    row_4 = next(line for line in text.splitlines() if "16 jobs at once, 4 worker" in line)
    row_8 = next(line for line in text.splitlines() if "16 jobs at once, 8 worker" in line)
    assert row_4.endswith("efficiency 0.94 | >= 0.9 | yes |")
    assert row_8.endswith("efficiency 0.60 | >= 0.8 | **no** |")
    assert "25.0 ms (main 5.0 + pool 20.0)" in text
    detail_4 = next(line for line in text.splitlines() if line.startswith("| installed | 4 |"))
    assert "| 6.00 s (0.90) |" in detail_4
    detail_8 = next(line for line in text.splitlines() if line.startswith("| installed | 8 |"))
    assert "| 5.00 s (4.50-9.00) |" in detail_8
    assert "all other processes 40 CPU-s (10% of the machine)" in text
    met_8 = next(line for line in render(_results(3.5)).splitlines() if "8 worker" in line)
    assert met_8.endswith("| yes |")
    overhead = next(line for line in text.splitlines() if "testgate overhead per job" in line)
    assert overhead.endswith("| +100 ms (x1.18) | <= +50 ms | **no** |")


def test_render_shows_the_cold_start_latency_beside_the_warm_one() -> None:
    cold = LatencyResult([PytestRun(0.5, 0.45)], [0.58, 0.58])
    text = render(replace(_results(wall_at_8=5.0), latency_cold=cold))
    row = next(line for line in text.splitlines() if "TESTGATE_WARM_PYTEST=false" in line)
    assert "bare pytest 500 ms in that run)" in row and "| 580 ms, overhead +80 ms |" in row


def test_replace_block_swaps_only_the_generated_block() -> None:
    block = f"{BEGIN}\nnew\n{END}\n"
    doc = f"# Benchmarks\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Notes\nkept\n"
    updated = replace_block(doc, block)
    assert updated == f"# Benchmarks\n\nintro\n\n{BEGIN}\nnew\n{END}\n\n## Notes\nkept\n"
    assert replace_block(updated, block) == updated


def test_replace_block_appends_when_the_document_has_none() -> None:
    block = f"{BEGIN}\nnew\n{END}\n"
    assert replace_block("# Benchmarks\n", block) == f"# Benchmarks\n\n{block}"


def test_the_sharding_suites_have_the_asked_number_of_tests() -> None:
    from bench.sharding import cpu_suite, io_suite, ratio_goal_met

    io = io_suite(400, 0.05)
    assert sum(text.count("def test_io_") for text in io.values()) == 400
    assert len(io) == 20 and all("time.sleep(0.05)" in text for text in io.values())
    cpu = cpu_suite(60, 1000)
    assert sum(text.count("def test_cpu_") for text in cpu.values()) == 60
    assert ratio_goal_met(3.0, 24.0, 1.3 / 8) and not ratio_goal_met(4.0, 24.0, 1.3 / 8)


def test_the_uneven_suite_is_long_tailed() -> None:
    from bench.sharding import uneven_loops, uneven_suite

    loops = uneven_loops(48, 1_000_000)
    assert len(loops) == 48 and max(loops) > 3 * (sum(loops) / 48)
    assert (
        len(uneven_suite(loops)) == 8
        and "time.sleep" in uneven_suite(loops, "sleep")["tests/test_uneven_000.py"]
    )


def test_the_time_to_fail_suite_fails_only_its_last_test() -> None:
    from bench.time_to_fail import failing_last_suite

    files = failing_last_suite(40, 0.0)
    text = "".join(files[name] for name in sorted(files))
    assert text.count("def test_") == 40 and text.count("assert False") == 1
    assert text.rstrip().endswith("assert False")


def test_the_venv_job_row_shows_overhead_and_cpu_against_bare_in_that_venv() -> None:
    from bench.venv_job import VenvRun, render

    run = VenvRun("pytest only", True, [0.2, 0.3, 0.25], [0.5, 0.4, 0.45], [0.4, 0.5, 0.45], 0.18)
    row = render([run]).splitlines()[-1]
    assert row == "| pytest only | warm | 250 | 450 | -200 | 180 | 450 | 0.40 |"


def test_the_insuite_table_names_each_variant_against_bare_and_the_worker_run() -> None:
    from bench.insuite import Through, render

    medians = {"bare": 4.0, "gate": 4.04, "gate without progress": 4.02}
    text = render(medians, 500, 20, Through([4.1, 3.9], [4.0, 4.2]))
    assert "| gate | 4.04 | 1.010 |" in text
    assert "| gate without progress | 4.02 | 1.005 | 50% |" in text
    assert "through a worker, enqueue -> advance (2 jobs) | 4.00 | 0.976" in text
    assert text.endswith("gate / bare = 1.010 (goal <= 1.02)")


def test_the_many_tests_suite_collects_one_test_per_entry(tmp_path: Path) -> None:
    from bench.sharding import many_suite

    for name, text in many_suite(list(range(1, 41)), cases=10, per_file=2).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "40 tests collected" in collected
    assert sorted(p.name for p in (tmp_path / "tests").iterdir()) == [
        "test_many_000.py",
        "test_many_001.py",
    ]


def test_the_timeline_puts_each_delivery_on_a_free_pool_process_and_counts_idle() -> None:
    from bench.sharding import timeline
    from testkit.otlp import ReceivedSpan

    def span(
        name: str, span_id: str, parent: str, start: float, end: float, **attrs: Any
    ) -> ReceivedSpan:
        return ReceivedSpan(
            "t", span_id, parent, name, "w", attrs, int(start * 1e9), int(end * 1e9)
        )

    text = timeline(
        [
            span("testgate.job", "j", "", 0.0, 1.0),
            span("testgate.collect", "c", "j", 0.2, 1.0),
            span("testgate.shard", "s1", "", 1.0, 5.0, **{"testgate.shard": 1}),
            span(
                "testgate.suite",
                "b1",
                "s1",
                1.1,
                5.0,
                **{"testgate.batch": 1, "testgate.tests": 30},
            ),
            span("testgate.shard", "s2", "", 1.2, 4.0, **{"testgate.shard": 2}),
            span(
                "testgate.suite",
                "b2",
                "s2",
                1.3,
                4.0,
                **{"testgate.batch": 2, "testgate.tests": 20},
            ),
            span("testgate.merge", "m", "", 5.0, 5.5),
            span("run/testgate.merge_test_shards", "x", "m", 5.0, 5.5),
        ]
    ).splitlines()
    assert text == (
        [
            "  pytest (collect and suite) in all: 7.40 s",
            "  pool process 1: idle 0.00 s",
            "    job 0.00-1.00 s: collect 0.80",
            "    shard 1 1.00-5.00 s: suite #1 (30) 3.90",
            "    merge 5.00-5.50 s",
            "  pool process 2: idle 2.70 s",
            "    shard 2 1.20-4.00 s: suite #2 (20) 2.70",
        ]
    )
