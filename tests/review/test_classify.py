"""Failure classification: the pure rule, then in-process with a real origin whose
branch has a regression, a failure main already has and a flaky test, each re-run on
the branch and on main's merge base by real pytest processes."""

from __future__ import annotations

import json
from typing import Any

from testkit.repofactory import make_origin, show_file
from tests.gateworld import World, WorldFactory, job
from worker.notify.events import Advance
from worker.pipeline.runner import run_gate
from worker.report.orchestrator_gate import parse_tests_verdict
from worker.review.classify import Classified, classify
from worker.review.packet import MAX_MESSAGE_CHARS, MAX_TESTS, failure_packet, reproduce_command
from worker.suite.probe import TestOutcome

REPORT = "docs/work-items/WI-5/13-test-report.md"
ADD = "tests/test_calc.py::test_add"
OLD = "tests/test_known.py::test_known_broken"
FLAKY = "tests/test_flaky.py::test_first_run_fails"


def test_a_pass_on_the_immediate_rerun_is_flaky_whatever_the_base_says() -> None:
    [only] = classify([ADD], {ADD: "passed"}, {ADD: "failed"})
    assert only == Classified(ADD, "flaky", "passed when re-run on the branch")


def test_the_base_run_decides_between_pre_existing_and_introduced() -> None:
    ids = ["a", "b", "c", "d", "e"]
    base = {"a": "failed", "b": "passed", "c": "skipped", "d": "missing"}
    classes = [c.failure_class for c in classify(ids, {i: "failed" for i in ids}, base)]
    assert classes == ["pre-existing", "introduced", "introduced", "introduced", "unknown"]


def test_without_a_base_run_nothing_but_flakiness_can_be_told() -> None:
    classes = classify(["a", "b"], {"a": "passed", "b": "failed"}, None)
    assert [c.failure_class for c in classes] == ["flaky", "unknown"]


def test_the_reproduce_command_quotes_every_id_for_the_shell() -> None:
    command = reproduce_command(["tests/t.py::test_x[a b]", "tests/t.py::test_y"])
    assert command == "python -m pytest 'tests/t.py::test_x[a b]' tests/t.py::test_y"
    assert reproduce_command([]) is None


def test_the_packet_is_bounded_whatever_the_suite_printed() -> None:
    failing = [TestOutcome(f"t.py::test_{i}", "failed", "x" * 5000) for i in range(100)]
    packet = failure_packet(failing, None, None)
    assert len(packet["failing_tests"]) == MAX_TESTS and packet["failing_count"] == 100
    assert all(len(m) == MAX_MESSAGE_CHARS for m in packet["messages"].values())
    assert len(json.dumps(packet)) < 10_000


def test_the_advance_carries_a_packet_only_when_there_is_one() -> None:
    fields: dict[str, Any] = {
        "task_id": 1,
        "repo": "r",
        "work_item_id": "w",
        "branch": "b",
        "result": "FAIL",
        "exit_code": 1,
        "smoke": "skipped",
        "commit": None,
        "report_path": "p",
        "report_pushed": True,
        "outcome": "code-fail",
    }
    plain = Advance(**fields).kwargs()
    assert "failure_packet" not in plain
    with_packet = Advance(**fields, failure_packet={"failing_count": 1}).kwargs()
    assert with_packet == {**plain, "failure_packet": {"failing_count": 1}}


MAIN = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
    "tests/test_known.py": "def test_known_broken():\n    assert False, 'broken on main'\n",
}
# Flaky the way a polluted test is: it fails after another test of the run has left
# state behind in the process, and passes when run again alone. (The re-run is in a
# fresh checkout, so a marker left in the worktree would not make it pass.)
POLLUTER_TEST = (
    "import os\n\n\ndef test_leaves_state_behind():\n    os.environ['POLLUTED'] = 'yes'\n"
)
FLAKY_TEST = (
    "import os\n\n\n"
    "def test_first_run_fails():\n"
    "    if os.environ.get('POLLUTED'):\n"
    "        raise AssertionError('first run fails')\n"
)
BRANCH = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "tests/test_a_polluter.py": POLLUTER_TEST,
    "tests/test_flaky.py": FLAKY_TEST,
}


def classifying_world(world: WorldFactory, classify: bool = True) -> World:
    contract = {
        "smoke_enabled": False,
        "classify": classify,
        "timeout_s": 120,
    }
    return world(contracts={"classy": contract})


def gate(w: World) -> tuple[dict[str, Any], str]:
    make_origin(w.origins, "classy", BRANCH, main_files=MAIN)
    result = run_gate(job("classy"), w.ctx, attempt=0, delivery_id="d")
    assert result.kind == "advanced"
    [(_, kwargs)] = w.sender.sent
    report = show_file(w.origins / "classy.git", "feature/x", REPORT)
    assert parse_tests_verdict(report) is False
    return kwargs, report


def test_a_regression_a_failure_main_has_and_a_flaky_test_are_told_apart(
    world: WorldFactory,
) -> None:
    kwargs, report = gate(classifying_world(world))
    assert (kwargs["result"], kwargs["outcome"], kwargs["exit_code"]) == ("FAIL", "code-fail", 1)
    packet = kwargs["failure_packet"]
    classes = {test_id: c["class"] for test_id, c in packet["classification"].items()}
    assert classes == {ADD: "introduced", OLD: "pre-existing", FLAKY: "flaky"}
    assert packet["messages"][ADD].startswith("assert -1 == 3")
    assert packet["messages"][OLD].startswith("AssertionError: broken on main")
    assert packet["messages"][FLAKY] == "AssertionError: first run fails"
    assert packet["reproduce"] == f"python -m pytest {ADD} {FLAKY} {OLD}"  # in run order
    assert packet["integrity"] is None
    assert f"- `{ADD}`: **introduced** (passes on main's merge base " in report
    assert f"- `{OLD}`: **pre-existing** (fails on main's merge base " in report
    assert f"- `{FLAKY}`: **flaky** (passed when re-run on the branch)" in report
    report_packet = json.loads(report.split("```json\n", 1)[1].split("\n```\n", 1)[0])
    assert report_packet == packet


def test_without_the_option_a_failing_run_reports_and_advances_as_before(
    world: WorldFactory,
) -> None:
    kwargs, report = gate(classifying_world(world, classify=False))
    assert kwargs["result"] == "FAIL"
    assert "failure_packet" not in kwargs
    assert "Failure classification" not in report and "Failure packet" not in report
