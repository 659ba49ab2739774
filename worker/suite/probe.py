"""The in-suite probe: a pytest plugin loaded into every pytest testgate starts.

It records what the worker cannot see from outside the process: the test running
right now, each test's outcome and first failure message, the collected ids, and,
a few seconds before the hard timeout, the stacks of every thread. With a selection
file it runs only the listed ids. Like the progress plugin it is plain source (any
interpreter a contract picks can load it) and never changes an outcome or the exit
code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from worker.containment.sandbox import Sandbox

PROBE_MODULE = "testgate_probe"
MAX_STACK_CHARS = 6000
FRAMES_PER_THREAD = 12

# faulthandler's watchdog is a C thread: it dumps even when the hanging test holds the
# GIL (a runaway regex, a C extension). It is re-armed at every test because pytest's
# own `faulthandler_timeout` arms and cancels the one watchdog around each test; this
# keeps it pointed at the run's deadline rather than the test's.
_PLUGIN_SOURCE = '''\
"""Written by testgate: what ran, how it ended, where it hung. Never affects results."""
import faulthandler, json, os, time

import pytest

_env = os.environ.get
_CURRENT = _env("GATE_CURRENT_TEST_FILE")
_COLLECTED = _env("GATE_COLLECTED_FILE")
_SELECT = _env("GATE_SELECT_FILE")
_DUMP_AT = float(_env("GATE_DUMP_AT") or 0)
_files = {}
_phases = {}
_seconds = {}  # setup + call + teardown, per test


def _open(name, var):
    path = _env(var)
    if path and name not in _files:
        try:
            # Appending: with pytest-xdist several processes write the same file.
            _files[name] = open(path, "a", buffering=1)
        except OSError:
            pass  # the probe is best effort; the verdict never depends on it


def _arm():
    if "stacks" in _files and _DUMP_AT:
        faulthandler.dump_traceback_later(max(_DUMP_AT - time.time(), 0.01), file=_files["stacks"])


def _replace(path, text):
    if not path:
        return
    try:
        with open(path + ".tmp", "w") as out:
            out.write(text)
        os.replace(path + ".tmp", path)
    except OSError:
        pass


def pytest_configure(config):
    _open("stacks", "GATE_STACKS_FILE")
    _open("outcomes", "GATE_OUTCOMES_FILE")
    _arm()


def pytest_unconfigure(config):
    if "stacks" in _files:
        faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    if not _SELECT:
        return
    try:
        with open(_SELECT) as handle:
            wanted = set(json.load(handle))
    except (OSError, ValueError):
        wanted = set()  # an unreadable selection runs nothing, never the whole suite
    dropped = [item for item in items if item.nodeid not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.nodeid in wanted]


def pytest_collection_finish(session):
    if _COLLECTED:
        _replace(_COLLECTED, json.dumps([item.nodeid for item in session.items]))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    _replace(_CURRENT, item.nodeid)
    _arm()


@pytest.hookimpl(trylast=True)
def pytest_exception_interact(node, call, report):
    _arm()  # pytest cancels the watchdog on every failure


def pytest_sessionfinish(session, exitstatus):
    _replace(_CURRENT, "")
    _arm()


def _message(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    return text[:1000]


def pytest_runtest_logreport(report):
    outcome, _ = _phases.get(report.nodeid, (None, ""))
    _seconds[report.nodeid] = _seconds.get(report.nodeid, 0.0) + (report.duration or 0.0)
    if report.failed and outcome != "failed":
        _phases[report.nodeid] = ("failed", _message(report))
    elif report.skipped and outcome in (None, "passed"):
        kind = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        _phases[report.nodeid] = (kind, "")
    elif report.passed and outcome is None and report.when == "call":
        _phases[report.nodeid] = ("passed", "")


def pytest_runtest_logfinish(nodeid, location):
    outcome, message = _phases.pop(nodeid, ("passed", ""))
    seconds = round(_seconds.pop(nodeid, 0.0), 4)
    out = _files.get("outcomes")
    if out is not None:
        try:
            record = {"id": nodeid, "outcome": outcome, "message": message, "seconds": seconds}
            out.write(json.dumps(record) + "\\n")
        except (OSError, ValueError):
            pass
'''

_THREAD_HEADER = re.compile(r"^(Current thread|Thread) 0x[0-9a-f]+", re.MULTILINE)


@dataclass(frozen=True)
class TestOutcome:
    """How one test ended: passed, failed, skipped or xfailed."""

    __test__ = False  # not a pytest test class, despite the name

    test_id: str
    outcome: str
    message: str = ""  # the first failure's message (assertion or exception line)
    seconds: float = 0.0  # setup + call + teardown


@dataclass(frozen=True)
class Hang:
    """Where a suite that was killed at its hard timeout hung."""

    test: str | None  # the test running when it was killed; None outside any test
    stacks: str  # every thread's stack, most recent call first; "" if none was dumped


@dataclass(frozen=True)
class ProbeFiles:
    """Where the probe of one pytest process writes; all in one directory."""

    directory: Path

    @property
    def current(self) -> Path:
        return self.directory / "current-test"

    @property
    def outcomes(self) -> Path:
        return self.directory / "outcomes.jsonl"

    @property
    def stacks(self) -> Path:
        return self.directory / "stacks.txt"

    @property
    def collected(self) -> Path:
        return self.directory / "collected.json"

    @property
    def select(self) -> Path:
        return self.directory / "select.json"


def hang_dump_margin_s(timeout_s: float) -> float:
    """How long before the hard timeout the stacks are dumped: a few seconds, less
    for very short timeouts so the dump still happens before the kill."""
    return min(5.0, timeout_s / 4)


def with_probe(
    sandbox: Sandbox,
    files: ProbeFiles,
    *,
    dump_at: float | None = None,
    collect: bool = False,
    select: Iterable[str] | None = None,
) -> Sandbox:
    """`sandbox` with the probe importable and told where to write.

    `dump_at` (epoch seconds) arms the stack dump; `collect` records the collected ids;
    `select` runs only those ids.
    """
    files.directory.mkdir(parents=True, exist_ok=True)
    plugins = sandbox.scratch_dir / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / f"{PROBE_MODULE}.py").write_text(_PLUGIN_SOURCE)
    env = dict(sandbox.extra_env)
    if str(plugins) not in env.get("PYTHONPATH", "").split(":"):
        # Absolute and first, so a contract's relative PYTHONPATH keeps working after it.
        env["PYTHONPATH"] = ":".join(p for p in (str(plugins), env.get("PYTHONPATH")) if p)
    env["GATE_CURRENT_TEST_FILE"] = str(files.current)
    env["GATE_OUTCOMES_FILE"] = str(files.outcomes)
    if dump_at is not None:
        env.update({"GATE_STACKS_FILE": str(files.stacks), "GATE_DUMP_AT": f"{dump_at:.3f}"})
    if collect:
        env["GATE_COLLECTED_FILE"] = str(files.collected)
    if select is not None:
        files.select.write_text(json.dumps(sorted(set(select))))
        env["GATE_SELECT_FILE"] = str(files.select)
    return replace(sandbox, extra_env=env)


def read_outcomes(files: ProbeFiles) -> tuple[TestOutcome, ...]:
    """Every test the probe saw end, in order; () when it wrote nothing."""
    try:
        lines = files.outcomes.read_text(errors="replace").splitlines()
    except OSError:
        return ()
    outcomes: list[TestOutcome] = []
    for line in lines:
        try:
            data = json.loads(line)
            outcomes.append(
                TestOutcome(
                    str(data["id"]),
                    str(data["outcome"]),
                    str(data["message"]),
                    float(data.get("seconds", 0.0)),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    return tuple(outcomes)


def read_collected(files: ProbeFiles) -> frozenset[str] | None:
    """The ids collection ended with, or None when the probe never got that far."""
    try:
        data = json.loads(files.collected.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, list):
        return None
    return frozenset(str(item) for item in data)


def read_hang(files: ProbeFiles) -> Hang | None:
    """Where a killed run hung, or None when the probe left nothing to say."""
    try:
        current = files.current.read_text(errors="replace").strip()
    except OSError:
        current = ""
    try:
        stacks = files.stacks.read_text(errors="replace")
    except OSError:
        stacks = ""
    if not current and not stacks.strip():
        return None
    return Hang(test=current or None, stacks=trim_stacks(stacks))


def trim_stacks(dump: str, frames: int = FRAMES_PER_THREAD, limit: int = MAX_STACK_CHARS) -> str:
    """The top `frames` frames of each thread (the innermost calls: the test's own code
    comes first, pytest's machinery after), at most `limit` characters."""
    starts = [m.start() for m in _THREAD_HEADER.finditer(dump)]
    if not starts:
        return dump.strip()[:limit]
    head = dump[: starts[0]].strip()
    blocks = [dump[a:b] for a, b in zip(starts, [*starts[1:], len(dump)], strict=True)]
    kept = [head] if head else []
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip()]
        shown = lines[: frames + 1]
        if len(lines) > len(shown):
            shown.append(f"  ... {len(lines) - len(shown)} more frame(s)")
        kept.append("\n".join(shown))
    return "\n".join(kept)[:limit]
