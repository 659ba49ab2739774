"""A one-test job whose contract names its own interpreter (a venv), warm and cold,
against bare `python -m pytest` in that same venv.

    .venv/bin/python -m bench.venv_job [--runs 10]

Two venvs are made, neither the worker's, with copies of the worker's installed
distributions: "pytest only" holds pytest and its dependencies; "with plugins" also
pytest-xdist, pytest-timeout and hypothesis (with theirs), which pytest auto-loads,
as in a repository with test dependencies. For each, a real `-c 1` worker (Redis DB 12) runs
the job with `TESTGATE_WARM_PYTEST` true (a warm interpreter for the venv's python,
started on first use) and false (cold starts);
jobs and bare runs alternate, so the machine's drift falls on both. CPU per job is the
whole machine's busy time over the jobs' window (/proc/stat, Redis and git included:
an upper bound), against the bare run's own user + system time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

from bench.common import (
    REPO,
    TimedOrchestrator,
    bare_pytest,
    broker_url,
    flush,
    make_bench_repo,
    running_worker,
)
from bench.latency import ONE_TEST

PYTEST_ONLY = ("pytest", "pluggy", "iniconfig", "packaging", "pygments")
PLUGINS = ("pytest-xdist", "execnet", "pytest-timeout", "hypothesis", "sortedcontainers")


def make_venv(root: Path, name: str, dists: tuple[str, ...]) -> str:
    """A venv with copies of these installed distributions (modules and metadata) in
    its own site-packages, as `pip install` would leave them, byte-compiled (pip
    compiles what it installs; suites run with PYTHONDONTWRITEBYTECODE and would
    otherwise compile every module on every cold start): a sandbox that shows the venv
    shows all of it."""
    venv = root / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for dist_name in dists:
        dist = distribution(dist_name)
        tops = {str(f).split("/", 1)[0] for f in dist.files or ()} - {".."}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.is_dir() and not (site / top).exists():
                shutil.copytree(source, site / top, ignore=shutil.ignore_patterns("*.pyc"))
            elif source.is_file():
                shutil.copy2(source, site / top)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "compileall", "-q", str(site)], check=True)
    return python


def busy_s() -> float:
    """The machine's busy CPU seconds so far (all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / 100


@dataclass(frozen=True)
class VenvRun:
    venv: str
    warm: bool
    job_s: list[float]
    bare_s: list[float]
    bare_cpu_s: list[float]
    machine_cpu_per_job_s: float

    def row(self) -> str:
        job, bare = statistics.median(self.job_s), statistics.median(self.bare_s)
        cpu, bare_cpu = self.machine_cpu_per_job_s, statistics.median(self.bare_cpu_s)
        return (
            f"| {self.venv} | {'warm' if self.warm else 'cold'} | {job * 1000:.0f} | "
            f"{bare * 1000:.0f} | {(job - bare) * 1000:+.0f} | {cpu * 1000:.0f} | "
            f"{bare_cpu * 1000:.0f} | {cpu / bare_cpu:.2f} |"
        )


def measure(root: Path, broker: str, runs: int) -> list[VenvRun]:
    repo = make_bench_repo(root, ONE_TEST)
    venvs = {
        "pytest only": make_venv(root, "venv-pytest", PYTEST_ONLY),
        "with plugins": make_venv(root, "venv-plugins", PYTEST_ONLY + PLUGINS),
    }
    found = []
    with TimedOrchestrator.connect(broker) as orchestrator:
        for label, python in venvs.items():
            contracts = root / f"contracts-{label.replace(' ', '-')}.toml"
            contracts.write_text(f'[repos.{REPO}]\ntarget = "tests/"\npython = "{python}"\n')
            for warm in (True, False):
                settings = {
                    "TESTGATE_CONTRACTS_FILE": str(contracts),
                    "TESTGATE_WARM_PYTEST": "true" if warm else "false",
                }
                with running_worker(root, broker, orchestrator.app, extra_env=settings):
                    orchestrator.run_serial(repo.branches[0], 2)  # mirror, warm start
                    orchestrator.settle()
                    jobs: list[float] = []
                    bare = []
                    cpu_in_jobs = 0.0
                    for _ in range(runs):
                        before = busy_s()
                        jobs.extend(orchestrator.run_serial(repo.branches[0], 1))
                        orchestrator.settle(quiet_s=0.0)
                        cpu_in_jobs += busy_s() - before
                        bare.extend(bare_pytest(repo.checkout, 1, python=python))
                    found.append(
                        VenvRun(
                            label,
                            warm,
                            jobs,
                            [b.wall_s for b in bare],
                            [b.cpu_s for b in bare],
                            cpu_in_jobs / runs,
                        )
                    )
                    print(found[-1].row(), file=sys.stderr, flush=True)
                time.sleep(0.5)
    return found


def render(results: list[VenvRun]) -> str:
    return "\n".join(
        [
            "| venv | start | job median ms | bare median ms | overhead | "
            "machine CPU/job ms | bare CPU ms | CPU ratio |",
            "|---|---|---|---|---|---|---|---|",
            *(r.row() for r in results),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.venv_job", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    broker = broker_url()
    flush(broker)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-venv-") as tmp:
            print(render(measure(Path(tmp), broker, args.runs)))
    finally:
        flush(broker)


if __name__ == "__main__":
    main()
