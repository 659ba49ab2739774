"""Hidden tests through the gate, in-process with real git and pytest: read from a
second repository, run against the branch's code with the trusted files, and reported
by id and first message line, or only counted, never with their source or output."""

from __future__ import annotations

from typing import Any

from testkit.repofactory import git, make_origin, show_file
from tests.gateworld import World, WorldFactory, job
from tests.hostile.gaming import BROKEN, MAIN
from worker.pipeline.runner import run_gate

REPORT = "docs/work-items/WI-5/13-test-report.md"
SECRET = "HIDDEN-SOURCE-7f3a"
HIDDEN = {
    "tests/test_hidden.py": (
        f"from calc import mul\n\n\ndef test_mul_hidden():\n    # {SECRET}\n"
        "    assert mul(3, 4) == 12\n"
    ),
    "tests/conftest.py": f"# {SECRET}\n",
}
# Its own tests rewritten to pass, the code still wrong: only the hidden tests see it.
GAMED = {**BROKEN, "tests/test_calc.py": "def test_mul():\n    assert True\n"}


def _world(world: WorldFactory, name: str, **contract: Any) -> World:
    hidden = {"repo": "secret-tests", "path": "tests/", "ref": "main"}
    entry = {"smoke_enabled": False, "timeout_s": 60, "hidden_tests": hidden, **contract}
    w = world(contracts={name: entry})
    make_origin(w.origins, "secret-tests", {"README.md": "# hidden\n"}, main_files=HIDDEN)
    return w


def _gate(w: World, name: str, files: dict[str, str]) -> tuple[dict[str, Any], str]:
    make_origin(w.origins, name, files, main_files=MAIN)
    result = run_gate(job(name), w.ctx, attempt=0, delivery_id=name)
    assert result.kind == "advanced", result
    report = show_file(w.origins / f"{name}.git", "feature/x", REPORT)
    return w.sender.sent[-1][1], report


def test_hidden_tests_pass_an_honest_branch(world: WorldFactory) -> None:
    w = _world(world, "honest")
    kwargs, report = _gate(w, "honest", {"README.md": "# honest\n"})
    assert (kwargs["result"], kwargs["outcome"]) == ("PASS", "code-pass")
    assert "| hidden suite |" in report


def test_a_failing_hidden_test_is_named_by_id_and_first_line_never_its_source(
    world: WorldFactory,
) -> None:
    w = _world(world, "gamed")
    kwargs, report = _gate(w, "gamed", GAMED)
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "code-fail")
    assert (
        "1 hidden test(s) did not pass: tests/test_hidden.py::test_mul_hidden: assert 7 == 12"
        in (report)
    )
    assert SECRET not in report and SECRET not in str(kwargs)
    assert "test_mul_hidden" not in report.split("## Output", 1)[1]
    bare = w.origins / "gamed.git"
    files = git(bare, "ls-tree", "-r", "--name-only", "feature/x").splitlines()
    assert not [f for f in files if "hidden" in f]


def test_hidden_report_count_only_counts(world: WorldFactory) -> None:
    w = _world(world, "counted", hidden_report="count")
    kwargs, report = _gate(w, "counted", GAMED)
    assert kwargs["result"] == "FAIL"
    assert "1 hidden test(s) did not pass" in report
    assert "test_mul_hidden" not in report and SECRET not in report
