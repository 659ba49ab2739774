"""What containment costs a one-test suite, and what the contained warm interpreter
gives back: bare `python -m pytest` against the gate's suite step (worker/suite/run.py:
the gate's command, probe, evidence, sandbox) contained cold, contained warm and
uncontained warm, interleaved round by round on this machine; medians.

    .venv/bin/python -m bench.containment --runs 15

The gate's figures are run_suite's wall time (start to verdict evidence read back) and
CPU: this process's own plus its reaped children's plus, for a warm start, the warm
interpreter's own and its reaped forks'. A cold contained run's CPU does not reach
this process's RUSAGE_CHILDREN (it measures ~10 ms), so it is not shown. Checkout,
setup, report and the broker are the same in every variant and left out.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench.common import bare_pytest
from worker.containment.bwrap import SuiteView, bwrap_missing, interpreter_paths
from worker.containment.sandbox import Sandbox, warm_interpreter
from worker.containment.slot import Slot, pool_slot
from worker.containment.view import contained_warm
from worker.containment.warm import stop_warm_pytest
from worker.insuite import HERE as INSUITE_DIR
from worker.settings import Settings
from worker.suite.run import run_suite

ONE_TEST = "def test_one():\n    assert 1 + 1 == 2\n"
VARIANTS = ("bare", "contained cold", "contained warm", "uncontained warm")


Timing = tuple[float, float]  # wall, CPU seconds


def _cpu_s(warm_pid: int | None) -> float:
    """CPU of this process and its reaped children, and of a warm interpreter's reaped
    forks (its cutime + cstime)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    if warm_pid is not None:
        fields = Path(f"/proc/{warm_pid}/stat").read_text().rsplit(")", 1)[1].split()
        # Its own utime + stime (the wipe, the fork) and its reaped forks' cutime + cstime.
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def _gate_run(root: Path, sandbox: Sandbox) -> Timing:
    warm_pid = sandbox.warm.pid if sandbox.warm else None
    cpu_before = _cpu_s(warm_pid)
    started = time.perf_counter()
    result = run_suite(root, sandbox, python=sys.executable, target="tests/", timeout_s=60)
    elapsed = time.perf_counter() - started
    cpu = _cpu_s(warm_pid) - cpu_before
    if result.exit_code != 0 or result.evidence_objection() is not None:
        raise SystemExit(f"the one-test suite did not pass: {result.output_tail}")
    return elapsed, cpu


def measure(runs: int) -> dict[str, list[Timing]]:
    if (missing := bwrap_missing()) is not None:
        raise SystemExit(f"no containment here: {missing}")
    workdir = Path(tempfile.mkdtemp(prefix="testgate-bench-containment-"))
    settings = Settings(workdir=str(workdir), containment="required")
    times: dict[str, list[Timing]] = {name: [] for name in VARIANTS}
    try:
        with pool_slot(workdir) as slot:
            assert slot is not None
            (slot.src / "tests").mkdir(parents=True)
            (slot.src / "tests" / "test_one.py").write_text(ONE_TEST)
            variants = _variants(settings, slot, workdir)
            for round_no in range(runs + 1):  # round 0 warms every variant up, uncounted
                for name in VARIANTS:
                    elapsed = variants[name]()
                    if round_no:
                        times[name].append(elapsed)
    finally:
        stop_warm_pytest()
        shutil.rmtree(workdir, ignore_errors=True)
    return times


def _variants(settings: Settings, slot: Slot, workdir: Path) -> dict[str, Callable[[], Timing]]:
    view = SuiteView(writable=(), readable=(INSUITE_DIR, *interpreter_paths(sys.executable)))

    def sandbox(**kw: object) -> Sandbox:
        scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=workdir))
        return Sandbox(scratch_dir=scratch, cookie=uuid.uuid4().hex, **kw)  # type: ignore[arg-type]

    def contained(warm: bool) -> Timing:
        box = sandbox(view=view, suite_dir=slot.suite)
        if warm:
            box = replace(box, warm=contained_warm(settings, view, sys.executable, slot))
        return _gate_run(slot.src, box)

    def bare() -> Timing:
        [run] = bare_pytest(slot.src, 1)
        return run.wall_s, run.cpu_s

    return {
        "bare": bare,
        "contained cold": lambda: contained(False),
        "contained warm": lambda: contained(True),
        "uncontained warm": lambda: _gate_run(slot.src, sandbox(warm=warm_interpreter())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    load_before = os.getloadavg()
    times = measure(args.runs)
    load_after = os.getloadavg()
    bare_ms = statistics.median(w for w, _ in times["bare"]) * 1000
    bare_cpu = statistics.median(c for _, c in times["bare"]) * 1000
    min_bare = min(w for w, _ in times["bare"]) * 1000
    print(f"one-test suite, {args.runs} interleaved rounds, medians (min-max)")
    for name in VARIANTS:
        ms = [w * 1000 for w, _ in times[name]]
        cpu = statistics.median(c for _, c in times[name]) * 1000
        median = statistics.median(ms)
        delta = "" if name == "bare" else f" ({median - bare_ms:+.0f} ms over bare)"
        cpu_delta = "" if name == "bare" else f" ({cpu - bare_cpu:+.0f} ms)"
        cpu_text = "n/a" if name == "contained cold" else f"{cpu:4.0f} ms{cpu_delta}"
        print(
            f"  {name:17} wall median {median:5.0f} ms{delta}, min {min(ms):.0f} ms"
            f" ({min(ms) - min_bare:+.0f}), max {max(ms):.0f} ms; CPU {cpu_text}"
        )
    before = " ".join(f"{x:.2f}" for x in load_before)
    after = " ".join(f"{x:.2f}" for x in load_after)
    print(f"  load average before {before}, after {after}")


if __name__ == "__main__":
    main()
