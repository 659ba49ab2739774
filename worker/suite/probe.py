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
from worker.insuite import PLUGINS_DIR

PROBE_MODULE = "testgate_probe"
MAX_STACK_CHARS = 6000
MAX_SESSION_BYTES = 64 * 1024
FRAMES_PER_THREAD = 12

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

    @property
    def session(self) -> Path:
        return self.directory / "session.jsonl"


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
    plugins = str(PLUGINS_DIR)
    env = dict(sandbox.extra_env)
    if plugins not in env.get("PYTHONPATH", "").split(":"):
        # Absolute and first, so a contract's relative PYTHONPATH keeps working after it.
        env["PYTHONPATH"] = ":".join(p for p in (plugins, env.get("PYTHONPATH")) if p)
    env["GATE_CURRENT_TEST_FILE"] = str(files.current)
    env["GATE_SESSION_FILE"] = str(files.session)
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


def read_session(files: ProbeFiles) -> str:
    """The session records as written (parsed against the run's nonce elsewhere)."""
    try:
        with files.session.open("rb") as handle:
            return handle.read(MAX_SESSION_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""


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
