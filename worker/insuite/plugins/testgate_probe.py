"""The in-suite probe: a pytest plugin that testgate loads into every pytest it starts.

It runs inside the suite's interpreter and imports nothing of the worker (only the
stdlib and pytest), so any interpreter a contract picks can load it from this
directory. It never changes an outcome or the exit code. It writes:

- the session record, the evidence a PASS needs: one JSON line written when the session
  finished, with pytest's exit status and the tests counted by outcome, tagged with the
  run's nonce (read once from a pipe the worker filled, then gone), so a line written
  by anything else does not count;
- what the worker cannot see from outside: the test running now, each test's outcome,
  duration and first failure message (the report's failing tests come from here; no
  JUnit XML is written), live progress (done / total / failed, for the task's PROGRESS
  state), the collected ids and, a few seconds before the hard timeout, the stacks of
  every thread;
- with a selection file, it runs only the listed ids (a shard's batch); with a
  first file, the listed ids run first, in that order (tests that failed last time).

PYTEST_DONT_REWRITE: it is imported before pytest starts (so the branch cannot shadow it),
which assertion rewriting would warn about; it asserts nothing.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import IO

import pytest

_env = os.environ.get
_CURRENT: str | None = None
_COLLECTED: str | None = None
_SELECT: str | None = None
_FIRST: str | None = None
_SESSION: str | None = None
_PROGRESS: str | None = None
_DUMP_AT = 0.0
_NONCE = ""
_NONCE_BYTES = 128
_files: dict[str, IO[str]] = {}
_phases: dict[str, tuple[str, str]] = {}
_seconds: dict[str, float] = {}  # setup + call + teardown, per test
_counts: dict[str, int] = {}  # final outcome -> tests
_collected: list[int | None] = [None]
_current_fd = [-1]
_CURRENT_BYTES = 4096
_pending: list[str] = []  # outcome lines not written yet
_flushed = [0.0]
_FLUSH_EVERY_S = 0.5  # the worker reads progress about once a second
_records = [True]  # False in a pytest-xdist worker: its controller records the outcomes
_selected: list[frozenset[str]] = []  # the selection's ids, once read
_narrowed: list[frozenset[str] | None] = []  # the files they name, None: collect all
_NEVER_IGNORED = frozenset({"conftest.py", "__init__.py"})


def _take_nonce() -> str:
    """The run's nonce: from the pipe the worker filled and closed before the start (a
    cold start), or from the environment (a warm start, whose environment /proc does
    not show). Removed from both, so nothing the suite starts inherits it."""
    value = os.environ.pop("GATE_NONCE", "")
    fd_text = os.environ.pop("GATE_NONCE_FD", "")
    if not fd_text.isdigit():
        return value
    fd = int(fd_text)
    try:
        return os.read(fd, _NONCE_BYTES).decode(errors="replace").strip()
    except OSError:
        return value
    finally:
        with contextlib.suppress(OSError):  # closed already: then there is no nonce
            os.close(fd)


def load_environment() -> None:
    """Where this run's records go, and its nonce. Called when the module is imported
    (a cold start imports it before any code of the suite) and again by a warm start's
    fork once it has the job's environment: never after code of the suite ran, so no
    conftest can take the nonce first."""
    global _CURRENT, _COLLECTED, _SELECT, _FIRST, _SESSION, _PROGRESS, _DUMP_AT, _NONCE  # noqa: PLW0603
    _CURRENT = _env("GATE_CURRENT_TEST_FILE")
    _COLLECTED = _env("GATE_COLLECTED_FILE")
    _SELECT = _env("GATE_SELECT_FILE")
    _FIRST = _env("GATE_FIRST_FILE")
    _SESSION = _env("GATE_SESSION_FILE")
    _PROGRESS = _env("GATE_PROGRESS_FILE")
    _DUMP_AT = float(_env("GATE_DUMP_AT") or 0)
    _NONCE = _take_nonce()


load_environment()


def _open(name: str, var: str) -> None:
    path = _env(var)
    if path and name not in _files:
        # Appending: with pytest-xdist several processes write the same file. A file
        # that cannot be opened is missing information, never a changed outcome.
        with contextlib.suppress(OSError):
            _files[name] = open(path, "a")  # noqa: SIM115 - kept open for the run


def _arm() -> None:
    # faulthandler's watchdog is a C thread: it dumps even when the hanging test holds
    # the GIL. Armed once, at the run's deadline: pytest's own faulthandler_timeout
    # (which would re-arm it around every test) is not used.
    if "stacks" in _files and _DUMP_AT:
        faulthandler.dump_traceback_later(max(_DUMP_AT - time.time(), 0.01), file=_files["stacks"])


def _show_current(nodeid: str) -> None:
    """The test running now, for a hang report: one pwrite into a file opened once
    (a write and a rename per test would cost more than many tests do)."""
    if _current_fd[0] < 0:
        return
    data = nodeid.encode(errors="replace")[:_CURRENT_BYTES]
    with contextlib.suppress(OSError):
        os.pwrite(_current_fd[0], data.ljust(_CURRENT_BYTES), 0)


def _replace(path: str | None, text: str) -> None:
    if not path:
        return
    try:
        with open(path + ".tmp", "w") as out:
            out.write(text)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # informational only: progress, the collected ids


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    _open("stacks", "GATE_STACKS_FILE")
    if not _is_xdist_worker(config):  # a worker's reports reach the controller's hooks too
        _open("outcomes", "GATE_OUTCOMES_FILE")
    else:
        _records[0] = False
    if _CURRENT and _current_fd[0] < 0:
        with contextlib.suppress(OSError):
            _current_fd[0] = os.open(_CURRENT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    _arm()


def pytest_unconfigure(config: pytest.Config) -> None:
    if "stacks" in _files:
        faulthandler.cancel_dump_traceback_later()
    _flush_outcomes()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _SELECT:
        _select(config, items, _SELECT)
    if _FIRST:
        _run_first(items, _FIRST)


def _run_first(items: list[pytest.Item], path: str) -> None:
    """The listed ids first, in the listed order; the others after, in their order.
    An unreadable list changes nothing: the order is informational, never a verdict."""
    try:
        with open(path) as handle:
            rank = {str(nodeid): i for i, nodeid in enumerate(json.load(handle))}
    except (OSError, ValueError, TypeError):
        return
    if rank:
        head = sorted((item for item in items if item.nodeid in rank), key=lambda i: rank[i.nodeid])
        items[:] = head + [item for item in items if item.nodeid not in rank]


def _select(config: pytest.Config, items: list[pytest.Item], path: str) -> None:
    wanted = _selection(path)
    dropped = [item for item in items if item.nodeid not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.nodeid in wanted]


def _selection(path: str) -> frozenset[str]:
    """The listed ids, read once; an unreadable selection runs nothing, never the whole
    suite."""
    if not _selected:
        try:
            with open(path) as handle:
                _selected.append(frozenset(str(nodeid) for nodeid in json.load(handle)))
        except (OSError, ValueError, TypeError):
            _selected.append(frozenset())
    return _selected[0]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With a selection, a file that holds none of its ids is not collected: a batch
    imports only its own files, each once, from the contract's target. Given those
    files as arguments instead, pytest lists their directory once per argument (1,000
    tests in 167 files of one directory collected in twice the time of all 3,000).
    Narrowed only when every id names a file under the rootdir (the ids' base)."""
    if not _SELECT or collection_path.name in _NEVER_IGNORED or not collection_path.is_file():
        return None
    if not _narrowed:
        named = {nodeid.split("::", 1)[0] for nodeid in _selection(_SELECT)}
        every = all((config.rootpath / name).is_file() for name in named)
        _narrowed.append(frozenset(named) if named and every else None)
    files = _narrowed[0]
    if files is None:
        return None
    try:
        name = collection_path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return None
    return True if name not in files else None


def pytest_collection_finish(session: pytest.Session) -> None:
    _collected[0] = len(session.items)
    if _COLLECTED:
        _replace(_COLLECTED, json.dumps([item.nodeid for item in session.items]))
    _write_progress()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    _show_current(item.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    # A wrapper: the record is written after every other plugin's sessionfinish, with
    # the exit status as they left it.
    yield
    _show_current("")
    _flush_outcomes()
    if _SESSION and _NONCE and not _is_xdist_worker(session.config):
        _write_session_record(session)


def _write_session_record(session: pytest.Session) -> None:
    record = {
        "nonce": _NONCE,
        "finished": True,
        "exitstatus": int(session.exitstatus),
        "collected": _collected[0],
        "counts": dict(_counts),
    }
    try:
        with open(str(_SESSION), "a") as out:
            out.write(json.dumps(record) + "\n")
    except OSError:
        pass  # no record: the worker fails the run closed


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    return text[:1000]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Called for every phase and every subtest: the passing report (almost all of them)
    # only adds its duration. A test without a failed or skipped report passed.
    nodeid = report.nodeid
    _seconds[nodeid] = _seconds.get(nodeid, 0.0) + (report.duration or 0.0)
    state = report.outcome
    if state == "passed":
        return
    outcome = _phases.get(nodeid, (None, ""))[0]
    if state == "failed":
        if outcome != "failed":
            _phases[nodeid] = ("failed", _message(report))
    elif outcome is None:  # skipped: it overrides a pass, never a failure
        _phases[nodeid] = ("xfailed" if hasattr(report, "wasxfail") else "skipped", "")


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    outcome, message = _phases.pop(nodeid, ("passed", ""))
    _counts[outcome] = _counts.get(outcome, 0) + 1
    seconds = round(_seconds.pop(nodeid, 0.0), 4)
    record = {"id": nodeid, "outcome": outcome, "message": message, "seconds": seconds}
    _pending.append(json.dumps(record))
    if time.monotonic() - _flushed[0] >= _FLUSH_EVERY_S:
        _flush_outcomes()


def _write_progress() -> None:
    """Tests done / total / failed so far, replaced whole (the worker reads it whole)."""
    if not _PROGRESS or not _records[0]:
        return
    done, failed = sum(_counts.values()), _counts.get("failed", 0)
    _replace(_PROGRESS, json.dumps({"total": _collected[0], "done": done, "failed": failed}))


def _flush_outcomes() -> None:
    """Outcome lines and progress go out in batches, at most _FLUSH_EVERY_S apart (a
    kill loses at most that much of an informational record; the counts are the
    evidence): a write per test would cost more than many fast tests do."""
    _flushed[0] = time.monotonic()
    _write_progress()
    out = _files.get("outcomes")
    if out is None or not _pending:
        _pending.clear()
        return
    try:
        out.write("\n".join(_pending) + "\n")
        out.flush()
    except (OSError, ValueError):
        pass  # informational: the counts are the evidence
    _pending.clear()
