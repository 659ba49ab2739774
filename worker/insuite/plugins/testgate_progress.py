"""The in-suite progress plugin: keeps a small JSON file of tests done / total / failed
up to date for the worker, which reads it about once a second.

It runs inside the suite's interpreter and imports nothing of the worker (stdlib and
pytest only). It never affects results; the verdict never depends on it.

PYTEST_DONT_REWRITE: it is imported before pytest starts (so the branch cannot shadow it),
which assertion rewriting would warn about; it asserts nothing.
"""

from __future__ import annotations

import json
import os
import time

import pytest

_state: dict[str, int | None] = {"total": None, "done": 0, "failed": 0}
_path: str | None = None


def load_environment() -> None:
    """Where progress goes: read at import, and again by a warm start's fork."""
    global _path  # noqa: PLW0603
    _path = os.environ.get("GATE_PROGRESS_FILE")


load_environment()
_EVERY_S = 0.2  # the worker reads once a second: a write per test is wasted CPU
_last = [0.0]
_failing: set[str] = set()  # tests of which a report failed, until they finish


def _write(force: bool = True) -> None:
    now = time.monotonic()
    if not _path or (not force and now - _last[0] < _EVERY_S):
        return
    _last[0] = now
    try:
        with open(_path + ".tmp", "w") as out:
            json.dump(_state, out)
        os.replace(_path + ".tmp", _path)
    except OSError:
        pass  # progress is best effort


def pytest_collection_finish(session: pytest.Session) -> None:
    _state["total"] = len(session.items)
    _write()


def _bump(key: str) -> None:
    _state[key] = (_state[key] or 0) + 1


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _failing.add(report.nodeid)


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    # Once per test, however many reports it made (setup, call, teardown, subtests).
    _bump("done")
    if nodeid in _failing:
        _failing.discard(nodeid)
        _bump("failed")
    _write(force=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write()
