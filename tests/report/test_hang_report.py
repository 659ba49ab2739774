"""A suite killed at its hard timeout says where it hung: the test that was running and
every thread's stack, dumped by faulthandler a few seconds before the kill. Real pytest
processes; the gate runs in-process without a broker."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from testkit.repofactory import make_origin, show_file
from tests.gateworld import WorldFactory, job
from worker.containment.sandbox import Sandbox
from worker.pipeline.runner import run_gate
from worker.report.orchestrator_gate import parse_tests_verdict
from worker.suite.probe import hang_dump_margin_s, trim_stacks
from worker.suite.run import run_suite, suite_command

REPORT = "docs/work-items/WI-5/13-test-report.md"
HANGS = (
    "import time\n\n\n"
    "def test_quick():\n    pass\n\n\n"
    "def test_waits_forever():\n    time.sleep(600)\n"
)


def test_the_watchdog_is_the_probes_alone_and_dumps_a_few_seconds_before_the_kill() -> None:
    command = suite_command("python", ["tests/"])
    assert not any("faulthandler_timeout" in arg for arg in command)  # no per-test re-arm
    assert hang_dump_margin_s(900) == 5
    assert hang_dump_margin_s(8) == 2  # short timeouts still dump before the kill


def test_a_hung_suite_fails_closed_with_the_hanging_test_and_its_stack(world: WorldFactory) -> None:
    w = world(contracts={"hangy": {"smoke_enabled": False, "timeout_s": 6}}, kill_grace_s=1)
    origin = make_origin(w.origins, "hangy", {"tests/test_hang.py": HANGS})
    # attempt 1 spends world()'s retry budget of 1: this delivery writes the report.
    result = run_gate(job("hangy"), w.ctx, attempt=1, delivery_id="d")
    assert result.kind == "advanced"
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "tool-error")
    assert "failure_packet" not in kwargs
    report = show_file(origin, "feature/x", REPORT)
    assert parse_tests_verdict(report) is False
    hung = "tests/test_hang.py::test_waits_forever"
    assert f"killed while running {hung}" in report  # the verdict's reason names it
    assert "## Where it hung" in report
    assert f"killed at its hard timeout while running `{hung}`" in report
    stack = report.split("## Where it hung", 1)[1]
    assert 'tests/test_hang.py", line 9 in test_waits_forever' in stack
    assert f"killed while running {hung}" in w.alerts[0]


def test_a_hang_late_in_the_run_is_dumped_at_the_runs_deadline(tmp_path: Path) -> None:
    # The hanging test here starts ~3 s in and has run only ~5 s when the run is killed
    # at 8 s: the probe's watchdog, aimed at the whole run's deadline, dumps its stack.
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_late.py").write_text(
        "import time\n\n\ndef test_slow():\n    time.sleep(3)\n\n\n"
        "def test_then_hangs():\n    while True:\n        time.sleep(0.05)\n"
    )
    sandbox = Sandbox(scratch_dir=tmp_path / "scratch", cookie=uuid.uuid4().hex, kill_grace_s=1)
    sandbox.scratch_dir.mkdir()
    run = run_suite(root, sandbox, python=sys.executable, target="tests/", timeout_s=8)
    assert run.timed_out and run.hang is not None
    assert run.hang.test == "tests/test_late.py::test_then_hangs"
    assert 'test_late.py", line 10 in test_then_hangs' in run.hang.stacks
    assert [o.test_id for o in run.outcomes] == ["tests/test_late.py::test_slow"]


def test_a_hang_that_holds_the_gil_is_still_dumped(tmp_path: Path) -> None:
    # Catastrophic regex backtracking never releases the GIL; faulthandler's watchdog
    # is a C thread and dumps anyway.
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_regex.py").write_text(
        "import re\n\n\ndef test_backtracks():\n    assert re.match(r'(a+)+$', 'a' * 64 + 'b')\n"
    )
    sandbox = Sandbox(scratch_dir=tmp_path / "scratch", cookie=uuid.uuid4().hex, kill_grace_s=1)
    sandbox.scratch_dir.mkdir()
    run = run_suite(root, sandbox, python=sys.executable, target="tests/", timeout_s=4)
    assert run.timed_out and run.hang is not None
    assert run.hang.test == "tests/test_regex.py::test_backtracks"
    assert 'test_regex.py", line 5 in test_backtracks' in run.hang.stacks


def test_a_long_dump_keeps_the_innermost_frames_of_every_thread() -> None:
    frames = "".join(f'  File "f{i}.py", line {i} in fn{i}\n' for i in range(40))
    dump = (
        "Timeout (0:00:05)!\n"
        f"Thread 0x0000000000000001 (most recent call first):\n{frames}"
        f"Thread 0x0000000000000002 (most recent call first):\n{frames}"
    )
    trimmed = trim_stacks(dump, frames=3)
    assert trimmed.splitlines() == [
        "Timeout (0:00:05)!",
        "Thread 0x0000000000000001 (most recent call first):",
        '  File "f0.py", line 0 in fn0',
        '  File "f1.py", line 1 in fn1',
        '  File "f2.py", line 2 in fn2',
        "  ... 37 more frame(s)",
        "Thread 0x0000000000000002 (most recent call first):",
        '  File "f0.py", line 0 in fn0',
        '  File "f1.py", line 1 in fn1',
        '  File "f2.py", line 2 in fn2',
        "  ... 37 more frame(s)",
    ]
