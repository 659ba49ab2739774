"""Trusted tests and required tests through the gate, in-process with real git and
pytest: one run when the branch changes no trusted file, a second one when it does,
the required tests judged in the run that decides."""

from __future__ import annotations

from typing import Any

from testkit.repofactory import make_origin, show_file
from tests.gateworld import World, WorldFactory, job
from tests.hostile.gaming import BROKEN, MAIN, MUL
from worker.pipeline.runner import run_gate

REPORT = "docs/work-items/WI-5/13-test-report.md"
HARMLESS = {"README.md": "# a branch\n"}
LATER = "tests/test_calc.py::test_later"


def _gate(w: World, name: str, files: dict[str, str], **kwargs: Any) -> tuple[dict[str, Any], str]:
    make_origin(w.origins, name, files, main_files=MAIN)
    result = run_gate(job(name, **kwargs), w.ctx, attempt=0, delivery_id=name)
    assert result.kind == "advanced", result
    report = show_file(w.origins / f"{name}.git", "feature/x", REPORT)
    return w.sender.sent[-1][1], report


def _world(world: WorldFactory, *names: str, **contract: Any) -> World:
    entry = {"smoke_enabled": False, "timeout_s": 60, **contract}
    return world(contracts={name: entry for name in names})


def test_a_branch_that_changes_no_trusted_file_is_judged_by_one_run(world: WorldFactory) -> None:
    w = _world(world, "same", trusted_tests=True)
    kwargs, report = _gate(w, "same", {"calc.py": "def mul(a, b):\n    return b * a\n"})
    assert (kwargs["result"], kwargs["outcome"]) == ("PASS", "code-pass")
    assert "| suite |" in report and "| trusted suite |" not in report
    assert "- command `python -m pytest tests/ -q, with the tests of main at " in report


def test_a_branch_that_changes_a_test_gets_a_second_trusted_run(world: WorldFactory) -> None:
    w = _world(world, "added", trusted_tests=True)
    added = {"tests/test_more.py": "def test_more():\n    assert True\n"}
    kwargs, report = _gate(w, "added", added)
    assert kwargs["result"] == "PASS"
    assert "| suite |" in report and "| trusted suite |" in report


def test_the_branchs_own_failing_test_fails_it_under_trusted_tests(world: WorldFactory) -> None:
    w = _world(world, "own", trusted_tests=True)
    own = {"tests/test_more.py": "def test_more():\n    assert False\n"}
    kwargs, report = _gate(w, "own", own)
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "code-fail")
    assert "the branch's own tests did not pass: exit code 1" in report
    assert "- `tests/test_more.py::test_more`" in report


def test_a_trusted_ref_other_than_main_is_compared_by_merge_base(world: WorldFactory) -> None:
    w = _world(world, "released", trusted_tests=True, trusted_ref="feature/x")
    # The branch itself as the trusted ref: its own tests are the trusted ones.
    kwargs, report = _gate(w, "released", dict(BROKEN))
    assert kwargs["result"] == "FAIL"
    assert "with the tests of feature/x at " in report


def test_required_tests_must_each_pass_in_the_deciding_run(world: WorldFactory) -> None:
    w = _world(world, "req", "req-skip", "req-ok")
    kwargs, _ = _gate(w, "req-ok", HARMLESS, required_tests=[MUL])
    assert kwargs["result"] == "PASS"
    kwargs, report = _gate(
        w, "req", HARMLESS, required_tests=[MUL, "tests/test_calc.py::test_gone"]
    )
    assert kwargs["result"] == "FAIL"
    assert "1 required test(s) did not pass: tests/test_calc.py::test_gone was not run" in report
    kwargs, report = _gate(w, "req-skip", HARMLESS, required_tests=[LATER])
    assert kwargs["result"] == "FAIL"
    assert f"1 required test(s) did not pass: {LATER} skipped" in report


def test_a_malformed_required_tests_list_is_handed_back(world: WorldFactory) -> None:
    w = _world(world)
    result = run_gate(job("passing", required_tests=[MUL, MUL]), w.ctx, attempt=0, delivery_id="d")
    assert result.kind == "handed-back"
    [(name, kwargs)] = w.sender.sent
    assert name == "orchestrator.test_gate_handback"
    assert "required_tests" in kwargs["reason"] and "more than once" in kwargs["reason"]
