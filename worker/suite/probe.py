"""The worker's side of the in-suite probe (worker/insuite/plugins/testgate_probe.py),
the pytest plugin loaded into every pytest testgate starts.

The plugin records what the worker cannot see from outside the process: the test
running right now, each test's outcome and first failure message, the collected ids,
and, a few seconds before the hard timeout, the stacks of every thread. With a
selection file it runs only the listed ids. It is plain source (any interpreter a
contract picks can load it) and never changes an outcome or the exit code; this module
lays out its files and reads what it wrote.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from worker.containment.sandbox import Sandbox, real_dir
from worker.containment.untrusted_files import UntrustedDir
from worker.insuite import PLUGINS_DIR

PROBE_MODULE = "testgate_probe"
MAX_STACK_CHARS = 6000
# Bounds of what is read back from the suite's reach.
MAX_SESSION_BYTES = 64 * 1024
MAX_OUTCOMES_BYTES = 64 * 1024 * 1024
MAX_CURRENT_BYTES = 4096
MAX_STACKS_BYTES = 1024 * 1024
# The files of one probe directory.
CURRENT = "current-test"
OUTCOMES = "outcomes.jsonl"
STACKS = "stacks.txt"
COLLECTED = "collected.json"
SELECT = "select.json"
FIRST = "first.json"
SESSION = "session.jsonl"
OUTPUT_LOG = "output.log"  # a contained run's stdout and stderr
PROGRESS = "progress.json"
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
    origin: str = ""  # a skip's or xfail's: the file that raised it, or "mark"


@dataclass(frozen=True)
class Hang:
    """Where a suite that was killed at its hard timeout hung."""

    test: str | None  # the test running when it was killed; None outside any test
    stacks: str  # every thread's stack, most recent call first; "" if none was dumped


class ProbeFiles:
    """Where the probe of one pytest process writes (its records and progress): a
    directory in the suite's reach, so it is made fresh under a random name once every
    earlier process of the job is gone (nothing can have been planted there), and read
    back only through a descriptor pinned before the run (worker/containment/
    untrusted_files.py: no link followed, no FIFO waited on, every read bounded)."""

    def __init__(self, parent: Path, label: str) -> None:
        real_dir(parent)
        self.directory = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=parent))
        self.reader = UntrustedDir(self.directory)

    def __enter__(self) -> ProbeFiles:
        return self

    def __exit__(self, *_: object) -> None:
        self.reader.close()

    def path(self, name: str) -> Path:
        return self.directory / name

    def output_tail(self, limit: int) -> tuple[str, int]:
        """The end of the run's output log kept here (from a line start when it was cut)
        and the log's size; ("", 0) when it is not a regular file."""
        size = self.reader.size(OUTPUT_LOG)
        tail = self.reader.tail(OUTPUT_LOG, limit) or ""
        if size > limit:
            newline = tail.find("\n")
            if 0 <= newline < len(tail) // 2:
                tail = tail[newline + 1 :]
        return tail, size


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
    first: Sequence[str] = (),
) -> Sandbox:
    """`sandbox` with the probe importable and told where to write.

    `dump_at` (epoch seconds) arms the stack dump; `collect` records the collected ids;
    `select` runs only those ids; `first` runs those ids first, in that order.
    """
    plugins = str(PLUGINS_DIR)
    env = dict(sandbox.extra_env)
    if plugins not in env.get("PYTHONPATH", "").split(":"):
        # Absolute and first, so a contract's relative PYTHONPATH keeps working after it.
        env["PYTHONPATH"] = ":".join(p for p in (plugins, env.get("PYTHONPATH")) if p)
    env["GATE_CURRENT_TEST_FILE"] = str(files.path(CURRENT))
    env["GATE_SESSION_FILE"] = str(files.path(SESSION))
    env["GATE_OUTCOMES_FILE"] = str(files.path(OUTCOMES))
    if dump_at is not None:
        env["GATE_STACKS_FILE"] = str(files.path(STACKS))
        env["GATE_DUMP_AT"] = f"{dump_at:.3f}"
    if collect:
        env["GATE_COLLECTED_FILE"] = str(files.path(COLLECTED))
    if select is not None:
        # Written before the run into the fresh directory: nothing of the suite ran yet.
        files.path(SELECT).write_text(json.dumps(sorted(set(select))))
        env["GATE_SELECT_FILE"] = str(files.path(SELECT))
    if first:
        files.path(FIRST).write_text(json.dumps(list(first)))
        env["GATE_FIRST_FILE"] = str(files.path(FIRST))
    return replace(sandbox, extra_env=env)


def read_outcomes(files: ProbeFiles) -> tuple[TestOutcome, ...]:
    """Every test the probe saw end, in order; () when it wrote nothing."""
    text = files.reader.read_text(OUTCOMES, MAX_OUTCOMES_BYTES) or ""
    outcomes: list[TestOutcome] = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
            outcomes.append(
                TestOutcome(
                    str(data["id"]),
                    str(data["outcome"]),
                    str(data["message"]),
                    float(data.get("seconds", 0.0)),
                    str(data.get("origin", "")),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a line cut short by a kill, or not the probe's
    return tuple(outcomes)


def read_session(files: ProbeFiles) -> str:
    """The session records as written (parsed against the run's nonce elsewhere)."""
    return files.reader.read_text(SESSION, MAX_SESSION_BYTES) or ""


def read_collected(files: ProbeFiles) -> frozenset[str] | None:
    """The ids collection ended with, or None when the probe never got that far."""
    try:
        data = json.loads(files.reader.read_text(COLLECTED, MAX_OUTCOMES_BYTES) or "")
    except ValueError:
        return None
    if not isinstance(data, list):
        return None
    return frozenset(str(item) for item in data)


def read_hang(files: ProbeFiles) -> Hang | None:
    """Where a killed run hung, or None when the probe left nothing to say."""
    current = (files.reader.read_text(CURRENT, MAX_CURRENT_BYTES) or "").strip()
    stacks = files.reader.tail(STACKS, MAX_STACKS_BYTES) or ""
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
