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
_OUTCOMES: str | None = None
_PROGRESS: str | None = None
_DUMP_AT = 0.0
_NONCE = ""
_NONCE_BYTES = 128
_files: dict[str, IO[str]] = {}
_phases: dict[str, tuple[str, str]] = {}
_seconds: dict[str, float] = {}  # setup + call + teardown, per test
_origins: dict[str, str] = {}  # where a test's skip or xfail was raised
_marked: set[str] = set()  # tests collected with a skip, skipif or xfail mark
_collect_skips: list[list[str]] = []  # [collector, where its skip was raised]
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
    global _OUTCOMES  # noqa: PLW0603
    _CURRENT = _env("GATE_CURRENT_TEST_FILE")
    _COLLECTED = _env("GATE_COLLECTED_FILE")
    _SELECT = _env("GATE_SELECT_FILE")
    _FIRST = _env("GATE_FIRST_FILE")
    # The records the verdict reads: taken out of the environment, so no name in it
    # points the suite at them (an xdist worker, which inherits it, writes neither).
    _SESSION = os.environ.pop("GATE_SESSION_FILE", None) or _SESSION
    _OUTCOMES = os.environ.pop("GATE_OUTCOMES_FILE", None) or _OUTCOMES
    _PROGRESS = _env("GATE_PROGRESS_FILE")
    _DUMP_AT = float(_env("GATE_DUMP_AT") or 0)
    _NONCE = _take_nonce()


load_environment()


def _open(name: str, var: str = "", path: str | None = None) -> None:
    path = path or _env(var)
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
    with contextlib.suppress(OSError):  # informational only: progress, the collected ids
        with open(path + ".tmp", "w") as out:
            out.write(text)
        os.replace(path + ".tmp", path)


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    _open("stacks", "GATE_STACKS_FILE")
    if not _is_xdist_worker(config):  # a worker's reports reach the controller's hooks too
        _open("outcomes", path=_OUTCOMES)
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
    _marked.update(
        item.nodeid
        for item in session.items
        if any(item.get_closest_marker(name) for name in ("skip", "skipif", "xfail"))
    )
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
        "framework": _framework_changes(session.config),
        "collect_skips": _collect_skips[:_MAX_CHANGES],
    }
    # Not written: the worker finds no record and fails the run closed.
    with contextlib.suppress(OSError), open(str(_SESSION), "a") as out:
        out.write(json.dumps(record) + "\n")


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    return text[:1000]


def _skip_origin(nodeid: str, excinfo: pytest.ExceptionInfo[BaseException] | None) -> str:
    """Where a skip or xfail came from: the innermost frame outside pytest, pluggy and
    unittest of the skip or xfail exception (a file); "mark" when only the framework
    raised it, or an xfail mark turned a failure into one, and the test had that mark
    when collection ended; else "a mark added while it ran"."""
    import unittest

    import _pytest
    import pluggy

    raised = (pytest.skip.Exception, pytest.xfail.Exception, unittest.SkipTest)
    if excinfo is not None and excinfo.errisinstance(raised):
        framework = tuple(
            os.path.dirname(m.__file__ or "") + os.sep for m in (_pytest, pytest, pluggy, unittest)
        )
        for entry in reversed(excinfo.traceback):
            path = str(entry.path)
            if not path.startswith(framework):
                return path
    return "mark" if nodeid in _marked else "a mark added while it ran"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    excinfo = call.excinfo  # as raised: pytest's unittest support replaces a SkipTest
    report = yield
    if report.outcome == "skipped":
        _origins.setdefault(item.nodeid, _skip_origin(item.nodeid, excinfo))
    return report


def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A module skipped as a whole never has its tests collected: where from, too.
    if report.skipped:
        where = report.longrepr[0] if isinstance(report.longrepr, tuple) else ""
        _collect_skips.append([report.nodeid, str(where)])


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
    origin = _origins.pop(nodeid, "")
    if outcome in ("skipped", "xfailed") and origin:
        record["origin"] = origin
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
    with contextlib.suppress(OSError, ValueError):  # informational: the counts are the evidence
        out.write("\n".join(_pending) + "\n")
        out.flush()
    _pending.clear()


# The framework check: pytest's reporting path as it was when this module was imported
# (before any code of the suite ran), compared at the session's end.
def _reporting_path() -> dict[str, object]:
    from _pytest import reports, runner, skipping, terminal

    report_cls = reports.TestReport
    return {
        "_pytest.runner.call_and_report": runner.call_and_report,
        "_pytest.runner.runtestprotocol": runner.runtestprotocol,
        "_pytest.runner.call_runtest_hook": getattr(runner, "call_runtest_hook", None),
        "_pytest.runner.pytest_runtest_makereport": runner.pytest_runtest_makereport,
        "_pytest.runner.CallInfo.from_call": runner.CallInfo.__dict__.get("from_call"),
        "TestReport.from_item_and_call": report_cls.__dict__.get("from_item_and_call"),
        "TestReport.__init__": report_cls.__dict__.get("__init__"),
        "BaseReport.passed": reports.BaseReport.__dict__.get("passed"),
        "BaseReport.failed": reports.BaseReport.__dict__.get("failed"),
        "BaseReport.skipped": reports.BaseReport.__dict__.get("skipped"),
        "_pytest.skipping.pytest_runtest_makereport": skipping.pytest_runtest_makereport,
        "_pytest.skipping.evaluate_xfail_marks": skipping.evaluate_xfail_marks,
        "TerminalReporter.pytest_runtest_logreport": (
            terminal.TerminalReporter.pytest_runtest_logreport
        ),
        "TerminalReporter.build_summary_stats_line": getattr(
            terminal.TerminalReporter, "build_summary_stats_line", None
        ),
        "pytest.TestReport": pytest.TestReport,
    }


_INSTALLED = _reporting_path()
_REPORTING_HOOKS = (
    "pytest_runtest_protocol",
    "pytest_runtest_makereport",
    "pytest_runtest_logreport",
    "pytest_report_teststatus",
    "pytest_runtestloop",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
    "pytest_collection_modifyitems",
    "pytest_deselected",
)
_MAX_CHANGES = 50


def _where(obj: object) -> str:
    code = getattr(getattr(obj, "__func__", obj), "__code__", None)
    if code is not None:
        return str(code.co_filename)
    return str(getattr(obj, "__module__", None) or type(obj).__module__)


def _framework_changes(config: pytest.Config) -> list[list[str]]:
    """[what, where it comes from] for each replaced piece of the reporting path and
    each reporting hook implemented outside pytest, pluggy and this module; the worker
    decides which of those places the trusted setup installed."""
    import _pytest
    import pluggy

    framework = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (_pytest, pytest, pluggy))
    changes = [
        [name, _where(now)]
        for name, now in _reporting_path().items()
        if now is not _INSTALLED.get(name)
    ]
    own = os.path.abspath(__file__)
    for hook in _REPORTING_HOOKS:
        caller = getattr(config.pluginmanager.hook, hook, None)
        for impl in caller.get_hookimpls() if caller is not None else ():
            where = _where(impl.function)
            if not where.startswith(framework) and os.path.abspath(where) != own:
                changes.append([hook, where])
    return [list(c) for c in dict.fromkeys(tuple(c) for c in changes)][:_MAX_CHANGES]
