"""Fixtures every test may take: `world`, a gate without a broker (tests/gateworld.py),
and `origin`, a bare git origin (testkit/repofactory.py), both under the test's tmp_path.

What is shared but not a fixture lives in plain helper modules (tests/gateworld.py,
tests/<package>/harness.py, ...), and what the benchmarks share too in testkit/: a test
imports from those, never from a test module or a conftest (tests/test_layering.py
checks)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from testkit.repofactory import OriginFactory, make_origin
from tests import gateworld, private_brokers
from tests.gateworld import World, WorldFactory

_STOP_BROKERS = pytest.StashKey[Callable[[], None]]()


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist (scripts/check runs the suite so), each process gets brokers of
    # its own: two processes' workers on one queue would take each other's jobs.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The Redis saves nothing (no snapshot, no append-only file): no directory of its own.
        config.stash[_STOP_BROKERS] = private_brokers.start(Path(tempfile.gettempdir()))


def pytest_unconfigure(config: pytest.Config) -> None:
    stop = config.stash.get(_STOP_BROKERS, None)
    if stop is not None:
        stop()


@pytest.fixture
def world(tmp_path: Path) -> WorldFactory:
    """`world(contracts=None, **overrides)`: a World whose origins are `tmp_path/origins`."""

    def make(contracts: dict[str, Any] | None = None, **overrides: Any) -> World:
        return gateworld.world(tmp_path, contracts, **overrides)

    return make


@pytest.fixture
def origin(tmp_path: Path) -> OriginFactory:
    """`origin(name, branch_files, ...)`: the bare `tmp_path/origins/<name>.git`, which is
    where a `world` of the same test looks for its repos."""

    def make(
        name: str,
        branch_files: Mapping[str, str],
        *,
        branch: str = "feature/x",
        main_files: Mapping[str, str] | None = None,
        object_format: str = "sha1",
    ) -> Path:
        return make_origin(
            tmp_path / "origins",
            name,
            branch_files,
            branch=branch,
            main_files=main_files,
            object_format=object_format,
        )

    return make
