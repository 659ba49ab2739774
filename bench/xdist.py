"""The I/O-bound suite without testgate: bare pytest, and pytest-xdist `-n <workers>`
splitting its tests over processes on one machine."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.common import PytestRun, bare_pytest


@dataclass(frozen=True)
class XdistResult:
    workers: int
    bare: list[PytestRun]
    xdist: list[PytestRun]

    @property
    def bare_s(self) -> float:
        return statistics.median(r.wall_s for r in self.bare)

    @property
    def xdist_s(self) -> float:
        return statistics.median(r.wall_s for r in self.xdist)

    @property
    def bare_cpu_s(self) -> float:
        return statistics.median(r.cpu_s for r in self.bare)

    @property
    def xdist_cpu_s(self) -> float:
        """pytest and its xdist worker processes together."""
        return statistics.median(r.cpu_s for r in self.xdist)


def measure_xdist(
    checkout: Path, runs: int, workers: int = 2, suite_env: Mapping[str, str] | None = None
) -> XdistResult:
    env = suite_env or {}
    # Without auto-loading, xdist must be named to be there at all.
    load = ["-p", "xdist"] if env.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") else []
    bare = bare_pytest(checkout, runs, suite_env=env)
    xdist = bare_pytest(checkout, runs, [*load, "-n", str(workers)], suite_env=env)
    return XdistResult(workers, bare, xdist)
