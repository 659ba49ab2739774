"""In-suite cost: what the gate's own command adds to pytest on a suite of many fast
tests with subtests, measured piece by piece against bare pytest, interleaved.

    .venv/bin/python -m bench.insuite [--runs 5] [--functions 500] [--subtests 20]
                                      [--jobs 0]

Each variant runs the same suite in the same checkout with the same interpreter: bare
`python -m pytest -q -p no:cacheprovider`, the gate's command as its cold start runs
it (`python boot.py ...`: the probe, loaded by its `-p`, which also writes progress),
the same without a progress file, the probe's `-p` under plain `python -m pytest`
(boot.py's share) and that with the `--junitxml` the gate carried until 2026-12-02
(for the share that dropping it saved). Wall time medians. With `--jobs N`, N jobs of
the same suite also go through a real `-c 1` worker (Redis DB 12), enqueue to advance,
against bare pytest timed between them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from worker.containment.sandbox import Sandbox
from worker.insuite import BOOT_SCRIPT, PLUGINS_DIR
from worker.suite.probe import PROGRESS, ProbeFiles, hang_dump_margin_s, with_probe
from worker.suite.progress import PROGRESS_FILE_VAR
from worker.suite.run import suite_command

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
    argv: tuple[str, ...]
    env: dict[str, str]


SCANNING = "the probe's -p under plain python -m pytest"


def variants(probe: ProbeFiles) -> list[Variant]:
    """Bare, the gate's command, without its progress file, with `-p` scanning, and
    that with JUnit XML. The gate's argv and the probe's environment are the worker's
    own (suite_command, with_probe), so the bench measures what a job runs."""
    dump_at = time.time() + TIMEOUT_S - hang_dump_margin_s(TIMEOUT_S)
    box = Sandbox(scratch_dir=probe.directory, cookie="bench")
    probed = with_probe(box, probe, dump_at=dump_at)
    probe_env = {**probed.extra_env, PROGRESS_FILE_VAR: str(probe.path(PROGRESS))}
    without_progress = {k: v for k, v in probe_env.items() if k != PROGRESS_FILE_VAR}
    gate = suite_command(sys.executable, ["tests/"])
    # As the cold start runs it (worker/containment/launch.py): boot.py in place of -m pytest.
    boot = (gate[0], str(BOOT_SCRIPT), *gate[3:])
    bare = (sys.executable, "-m", "pytest", "tests/", "-q", "-p", "no:cacheprovider")
    junit = probe.path("junit.xml")
    return [
        Variant("bare", bare, {}),
        Variant("gate", boot, probe_env),
        Variant("gate without progress", boot, without_progress),
        Variant(SCANNING, gate, probe_env),
        Variant("that + JUnit XML (until 2026-12-02)", (*gate, f"--junitxml={junit}"), probe_env),
    ]


def time_run(checkout: Path, variant: Variant) -> float:
    env = {
        **os.environ,
        **variant.env,
        "PYTHONPATH": str(PLUGINS_DIR),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    started = time.perf_counter()
    done = subprocess.run(
        variant.argv,
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
        with ProbeFiles(out, "probe") as probe:
            chosen = variants(probe)
            times: dict[str, list[float]] = {v.name: [] for v in chosen}
            for variant in chosen:  # a warm-up round: page cache, .pyc of pytest itself
                time_run(root / "repo", variant)
            for _ in range(runs):
                for variant in chosen:
                    for leftover in probe.directory.iterdir():
                        leftover.unlink()
                    times[variant.name].append(time_run(root / "repo", variant))
        return {name: statistics.median(values) for name, values in times.items()}


_COLLECTED = re.compile(rb"Collected : (\d+)")


def count_instructions(functions: int, subtests: int, gc_off: bool) -> dict[str, int]:
    """User-space instructions of bare pytest, of the gate's command and of its `-p`
    without boot.py, on a suite of `functions` x `subtests`, under valgrind's
    callgrind (a count, not a time: the machine's noise does not reach it; about a
    minute each, the three run at once).
    `gc_off` disables the garbage collector in both (a sitecustomize), so that where
    its collections happen to fall does not count."""
    with tempfile.TemporaryDirectory(prefix="bench-insuite-vg-") as tmp:
        root = Path(tmp)
        many_subtests_suite(root / "repo", functions, subtests)
        out = root / "out"
        out.mkdir()
        extra = []
        if gc_off:
            (root / "site").mkdir()
            (root / "site" / "sitecustomize.py").write_text("import gc\ngc.disable()\n")
            extra = [str(root / "site")]
        with ProbeFiles(out, "probe") as probe:  # where the probe writes; nothing is read back
            chosen = [v for v in variants(probe) if v.name in ("bare", "gate", SCANNING)]
        running = {}
        for variant in chosen:
            env = {
                **os.environ,
                **variant.env,
                "PYTHONPATH": ":".join([*extra, str(PLUGINS_DIR)]),
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONHASHSEED": "0",
            }
            argv = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={root / variant.name}.out",
                *variant.argv,
            ]
            running[variant.name] = subprocess.Popen(
                argv, cwd=root / "repo", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        counts = {}
        for name, process in running.items():
            _, err = process.communicate()
            found = _COLLECTED.search(err)
            if process.returncode != 0 or found is None:
                raise RuntimeError(
                    f"{name} under valgrind: exit {process.returncode}: {err[-500:]!r}"
                )
            counts[name] = int(found.group(1))
        return counts


@dataclass(frozen=True)
class Through:
    """Jobs of the suite through a real worker, and bare pytest timed between them."""

    job_s: list[float]
    bare_s: list[float]

    @property
    def job(self) -> float:
        return statistics.median(self.job_s)

    @property
    def bare(self) -> float:
        return statistics.median(self.bare_s)


def through_worker(jobs: int, functions: int, subtests: int) -> Through:
    """`jobs` jobs of the many-subtests suite through a `-c 1` worker, a bare run of
    the same checkout after each (alternated, so drift falls on both)."""
    from bench.common import (  # the broker's side only when asked for
        TimedOrchestrator,
        bare_pytest,
        broker_url,
        flush,
        make_bench_repo,
        running_worker,
    )

    with tempfile.TemporaryDirectory(prefix="bench-insuite-worker-") as tmp:
        root = Path(tmp)
        source = root / "source"
        many_subtests_suite(source, functions, subtests)
        files = {str(f.relative_to(source)): f.read_text() for f in source.rglob("*.py")}
        repo = make_bench_repo(root, files)
        broker = broker_url()
        flush(broker)
        job_s: list[float] = []
        bare_s: list[float] = []
        with (
            TimedOrchestrator.connect(broker) as orchestrator,
            running_worker(root, broker, orchestrator.app),
        ):
            orchestrator.run_serial(repo.branches[0], 1)  # warm-up: mirror, page cache
            for _ in range(jobs):
                job_s.extend(orchestrator.run_serial(repo.branches[0], 1))
                bare_s.append(bare_pytest(repo.checkout, 1)[0].wall_s)
            orchestrator.settle()
        flush(broker)
        return Through(job_s, bare_s)


def render(
    medians: dict[str, float], functions: int, subtests: int, through: Through | None = None
) -> str:
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
    if through is not None:
        lines.append(
            f"| through a worker, enqueue -> advance ({len(through.job_s)} jobs) | "
            f"{through.job:.2f} | {through.job / through.bare:.3f} (bare between: "
            f"{through.bare:.2f} s) | |"
        )
    lines.append("")
    lines.append(f"gate / bare = {gate / bare:.3f} (goal <= 1.02)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.insuite", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--functions", type=int, default=500)
    parser.add_argument("--subtests", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=0, help="jobs through a real worker")
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="FUNCTIONS",
        help="also count instructions under valgrind on a suite of this many functions",
    )
    args = parser.parse_args(argv)
    medians = measure(args.runs, args.functions, args.subtests)
    through = through_worker(args.jobs, args.functions, args.subtests) if args.jobs else None
    print(render(medians, args.functions, args.subtests, through))
    if args.instructions:
        print(f"\nInstructions, {args.instructions} functions x {args.subtests} subtests:\n")
        for gc_off in (False, True):
            counts = count_instructions(args.instructions, args.subtests, gc_off)
            print(
                f"- garbage collector {'off' if gc_off else 'on'}: bare {counts['bare']:,}, "
                f"gate {counts['gate']:,}, gate / bare = {counts['gate'] / counts['bare']:.4f}; "
                f"plain -p {counts[SCANNING]:,} ({counts[SCANNING] / counts['bare']:.4f})"
            )


if __name__ == "__main__":
    main()
