"""In-suite cost: what the gate's own command adds to pytest on a suite of many fast
tests with subtests, measured piece by piece against bare pytest, interleaved.

    .venv/bin/python -m bench.insuite [--runs 5] [--functions 500] [--subtests 20]

Each variant runs the same suite in the same checkout with the same interpreter: bare
`python -m pytest -q -p no:cacheprovider`, then the gate's command with one piece left
out at a time (JUnit XML, the probe, the progress plugin), then the
whole gate command. Wall time medians; no worker, no broker (those costs are the
latency benchmark's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from worker.insuite import PLUGINS_DIR
from worker.suite.probe import CURRENT, OUTCOMES, PROBE_MODULE, SESSION, STACKS, hang_dump_margin_s
from worker.suite.progress import PLUGIN_MODULE, PROGRESS_FILE_VAR

TIMEOUT_S = 900.0


def many_subtests_suite(root: Path, functions: int, subtests: int) -> None:
    """`functions` tests in files of 50, each with `subtests` subtests of a few
    microseconds: pytest 9 reports every subtest as a result of its own."""
    tests = root / "tests"
    tests.mkdir(parents=True)
    per_file = 50
    for start in range(0, functions, per_file):
        body = [
            f"def test_f{i}(subtests):\n    for k in range({subtests}):\n"
            "        with subtests.test(k=k):\n            assert k * k >= 0\n\n\n"
            for i in range(start, min(start + per_file, functions))
        ]
        (tests / f"test_m{start // per_file}.py").write_text("".join(body))


@dataclass(frozen=True)
class Variant:
    name: str
    args: tuple[str, ...]
    env: dict[str, str]


def variants(out: Path) -> list[Variant]:
    """Bare, the gate's command without one piece each, and the whole of it."""
    dump_after = TIMEOUT_S - hang_dump_margin_s(TIMEOUT_S)
    probe_env = {
        "GATE_CURRENT_TEST_FILE": str(out / CURRENT),
        "GATE_OUTCOMES_FILE": str(out / OUTCOMES),
        "GATE_SESSION_FILE": str(out / SESSION),
        "GATE_STACKS_FILE": str(out / STACKS),
        "GATE_DUMP_AT": f"{time.time() + dump_after:.3f}",
        PROGRESS_FILE_VAR: str(out / "progress.json"),
    }
    pieces = {
        "junit": (f"--junitxml={out / 'junit.xml'}",),
        "progress": ("-p", PLUGIN_MODULE),
        "probe": ("-p", PROBE_MODULE),
    }
    base = ("-q", "-p", "no:cacheprovider")
    found = [Variant("bare", base, {})]
    for left_out in pieces:
        kept = tuple(a for name, args in pieces.items() if name != left_out for a in args)
        found.append(Variant(f"gate without {left_out}", base + kept, probe_env))
    found.append(
        Variant("gate", base + tuple(a for args in pieces.values() for a in args), probe_env)
    )
    return found


def time_run(checkout: Path, variant: Variant) -> float:
    env = {
        **os.environ,
        **variant.env,
        "PYTHONPATH": str(PLUGINS_DIR),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/", *variant.args],
        cwd=checkout,
        env=env,
        capture_output=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{variant.name}: exit {done.returncode}\n{done.stdout[-2000:]!r}")
    return wall


def measure(runs: int, functions: int, subtests: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-insuite-") as tmp:
        root = Path(tmp)
        many_subtests_suite(root / "repo", functions, subtests)
        out = root / "out"
        out.mkdir()
        chosen = variants(out)
        times: dict[str, list[float]] = {v.name: [] for v in chosen}
        for variant in chosen:  # a warm-up round: page cache, .pyc of pytest itself
            time_run(root / "repo", variant)
        for _ in range(runs):
            for variant in chosen:
                for leftover in out.iterdir():
                    leftover.unlink()
                times[variant.name].append(time_run(root / "repo", variant))
        return {name: statistics.median(values) for name, values in times.items()}


def render(medians: dict[str, float], functions: int, subtests: int) -> str:
    bare = medians["bare"]
    gate = medians["gate"]
    lines = [
        f"In-suite cost, {functions} test functions x {subtests} subtests "
        f"({functions * subtests} subtest results), load {os.getloadavg()[0]:.2f}:",
        "",
        "| command | median s | / bare | share of the gate's cost |",
        "|---|---|---|---|",
    ]
    for name, seconds in medians.items():
        share = ""
        if name.startswith("gate without") and gate > bare:
            share = f"{(gate - seconds) / (gate - bare):.0%}"
        lines.append(f"| {name} | {seconds:.2f} | {seconds / bare:.3f} | {share} |")
    lines.append("")
    lines.append(f"gate / bare = {gate / bare:.3f} (goal <= 1.02)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.insuite", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--functions", type=int, default=500)
    parser.add_argument("--subtests", type=int, default=20)
    args = parser.parse_args(argv)
    medians = measure(args.runs, args.functions, args.subtests)
    print(render(medians, args.functions, args.subtests))


if __name__ == "__main__":
    main()
