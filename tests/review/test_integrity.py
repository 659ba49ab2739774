"""The test-integrity guard: its pure rules (diff parsing, id comparison, rename matching,
skip attribution, the deleted-code excuse) and, in-process with real git origins and real
pytest runs, the verdicts it gives (it can only turn a PASS into a FAIL)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testkit.repofactory import git, make_origin, show_file
from tests.gateworld import World, WorldFactory, job
from worker.contracts import parse_contracts
from worker.git.diff import DiffLine, FileChange, parse_diff
from worker.pipeline.runner import run_gate
from worker.report.orchestrator_gate import parse_tests_verdict
from worker.review.integrity import IntegrityInput, check_integrity, is_test_file
from worker.review.pysource import functions, imported_modules, is_module_file, scope_of
from worker.settings import Settings
from worker.verdict import Verdict, with_guard

REPORT = "docs/work-items/WI-5/13-test-report.md"

CALC = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
TESTS = (
    "from calc import add, mul\n\n\n"
    "def test_add():\n    assert add(1, 2) == 3\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n"
)
MAIN = {"calc.py": CALC, "tests/test_calc.py": TESTS}
BROKEN_MUL = CALC.replace("return a * b", "return a + b")
ONLY_ADD = "def add(a, b):\n    return a + b\n"
TESTS_WITHOUT_MUL = "from calc import add, mul\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"


# --- pure: the diff -----------------------------------------------------------------


def test_a_unified_zero_diff_keeps_each_lines_file_and_number() -> None:
    text = (
        "diff --git a/tests/test_a.py b/tests/test_a.py\n"
        "index 1..2 100644\n"
        "--- a/tests/test_a.py\n"
        "+++ b/tests/test_a.py\n"
        "@@ -7,2 +6,0 @@ def test_add():\n"
        "-def test_mul():\n"
        "-    assert mul(2, 3) == 6\n"
        "@@ -9,0 +9,1 @@\n"
        "+@pytest.mark.skip\n"
        "diff --git a/old.py b/new.py\n"
        "similarity index 100%\n"
        "rename from old.py\n"
        "rename to new.py\n"
        "diff --git a/gone.py b/gone.py\n"
        "deleted file mode 100644\n"
        "--- a/gone.py\n"
        "+++ /dev/null\n"
        "@@ -1 +0,0 @@\n"
        "---x = 1\n"
    )
    first, renamed, gone = parse_diff(text)
    assert first.removed == (
        DiffLine("tests/test_a.py", 7, "-", "def test_mul():"),
        DiffLine("tests/test_a.py", 8, "-", "    assert mul(2, 3) == 6"),
    )
    assert first.added == (DiffLine("tests/test_a.py", 9, "+", "@pytest.mark.skip"),)
    assert (renamed.old_path, renamed.new_path, renamed.renamed) == ("old.py", "new.py", True)
    # A removed line that starts with "--" is content, not a header.
    assert (gone.old_path, gone.new_path) == ("gone.py", None)
    assert gone.removed == (DiffLine("gone.py", 1, "-", "--x = 1"),)


def test_git_quoted_paths_are_unquoted() -> None:
    text = (
        'diff --git "a/t\\303\\251st.py" "b/t\\303\\251st.py"\n'
        'new file mode 100644\n--- /dev/null\n+++ "b/t\\303\\251st.py"\n@@ -0,0 +1 @@\n+x\n'
    )
    [change] = parse_diff(text)
    assert (change.old_path, change.new_path) == (None, "tést.py")


# --- pure: the source ---------------------------------------------------------------

SOURCE = (
    "import pytest\n"  # 1
    "from calc import mul\n"  # 2
    "from . import helpers\n"  # 3
    "\n"  # 4
    "@pytest.mark.parametrize('x', [1, 2])\n"  # 5
    "def test_p(x):\n"  # 6
    "    assert mul(x, 1) == x\n"  # 7
    "\n"  # 8
    "class TestK:\n"  # 9
    "    pytestmark = pytest.mark.slow\n"  # 10
    "    def test_m(self):\n"  # 11
    "        pass\n"  # 12
)


def test_functions_span_their_decorators_and_know_the_names_they_use() -> None:
    found = functions(SOURCE)
    assert set(found) == {"test_p", "TestK::test_m"}
    assert (found["test_p"].first, found["test_p"].last) == (5, 7)
    assert "mul" in found["test_p"].names


def test_a_line_is_scoped_to_its_test_its_class_or_its_module() -> None:
    assert scope_of(SOURCE, 5) == "test_p"
    assert scope_of(SOURCE, 10) == "TestK::"
    assert scope_of(SOURCE, 12) == "TestK::test_m"
    assert scope_of(SOURCE, 1) == ""
    assert scope_of("def broken(:\n", 1) is None


def test_imports_resolve_relative_ones_and_match_module_files() -> None:
    modules = imported_modules(SOURCE, "tests/test_x.py")
    assert {"pytest", "calc", "calc.mul", "tests", "tests.helpers"} <= modules
    assert is_module_file("src/calc.py", "calc")
    assert is_module_file("pkg/sub/__init__.py", "pkg.sub")
    assert not is_module_file("mycalc.py", "calc")


def test_test_files_are_told_from_source_files() -> None:
    assert is_test_file("tests/helpers.py") and is_test_file("pkg/test_x.py")
    assert is_test_file("conftest.py") and is_test_file("pkg/x_test.py")
    assert not is_test_file("calc.py") and not is_test_file("src/pkg/mod.py")


# --- pure: the rules ----------------------------------------------------------------


def given(**fields: Any) -> IntegrityInput:
    base: dict[str, Any] = {
        "base_ids": frozenset({"tests/test_calc.py::test_add", "tests/test_calc.py::test_mul"}),
        "branch_ids": frozenset({"tests/test_calc.py::test_add"}),
        "changes": (),
        "base_sources": {"tests/test_calc.py": TESTS},
        "branch_sources": {},
    }
    return IntegrityInput(**{**base, **fields})


def removed(path: str, first: int, *texts: str) -> tuple[DiffLine, ...]:
    return tuple(DiffLine(path, first + i, "-", t) for i, t in enumerate(texts))


def test_a_test_gone_from_collection_is_removed_with_the_lines_that_removed_it() -> None:
    change = FileChange(
        "tests/test_calc.py",
        "tests/test_calc.py",
        removed=removed("tests/test_calc.py", 8, "def test_mul():", "    assert mul(2, 3) == 6"),
    )
    found = check_integrity(given(changes=(change,)))
    [finding] = found.removed
    assert finding.test_id == "tests/test_calc.py::test_mul"
    assert [ln.text for ln in finding.lines] == ["def test_mul():", "    assert mul(2, 3) == 6"]
    assert found.objection is not None and "1 removed" in found.objection


def test_a_test_in_a_renamed_file_is_moved_not_removed() -> None:
    change = FileChange("tests/test_calc.py", "tests/test_arith.py")
    found = check_integrity(
        given(
            branch_ids=frozenset(
                {"tests/test_arith.py::test_add", "tests/test_arith.py::test_mul"}
            ),
            changes=(change,),
        )
    )
    assert found.removed == () and found.objection is None
    assert {m.new_id for m in found.moved} == {
        "tests/test_arith.py::test_add",
        "tests/test_arith.py::test_mul",
    }


def test_a_test_with_the_same_name_and_code_elsewhere_is_moved() -> None:
    moved_to = "import calc\nfrom calc import mul\n\nclass TestMul:\n    def test_mul(self):\n"
    moved_to += "        assert mul(2, 3) == 6\n"
    found = check_integrity(
        given(
            branch_ids=frozenset(
                {"tests/test_calc.py::test_add", "tests/test_m.py::TestMul::test_mul"}
            ),
            branch_sources={"tests/test_m.py": moved_to},
        )
    )
    assert [(m.old_id, m.new_id) for m in found.moved] == [
        ("tests/test_calc.py::test_mul", "tests/test_m.py::TestMul::test_mul")
    ]
    assert found.objection is None


def test_the_same_name_with_other_code_is_not_a_move() -> None:
    weaker = "def test_mul():\n    assert True\n"
    found = check_integrity(
        given(
            branch_ids=frozenset({"tests/test_calc.py::test_add", "tests/test_m.py::test_mul"}),
            branch_sources={"tests/test_m.py": weaker},
        )
    )
    assert [f.test_id for f in found.removed] == ["tests/test_calc.py::test_mul"]


def test_a_test_deleted_with_the_code_it_tested_is_excused() -> None:
    source = FileChange("calc.py", "calc.py", removed=removed("calc.py", 5, "def mul(a, b):"))
    found = check_integrity(given(changes=(source,)))
    assert found.removed == () and found.objection is None
    [excused] = found.excused
    assert excused.test_id == "tests/test_calc.py::test_mul"
    assert "calc.py:5 deletes `mul`" in excused.why


def test_deleting_code_the_test_does_not_use_or_that_moved_excuses_nothing() -> None:
    other = FileChange("calc.py", "calc.py", removed=removed("calc.py", 1, "def add(a, b):"))
    assert len(check_integrity(given(changes=(other,))).removed) == 1
    moved_def = FileChange("util.py", "util.py", added=(DiffLine("util.py", 1, "+", "def mul():"),))
    deleted = FileChange("calc.py", "calc.py", removed=removed("calc.py", 5, "def mul(a, b):"))
    assert len(check_integrity(given(changes=(deleted, moved_def))).removed) == 1


def test_a_removed_parametrize_case_is_caught_with_its_decorator_line() -> None:
    source = "import pytest\n\n@pytest.mark.parametrize('x', [1, 2, 3])\ndef test_p(x):\n    pass\n"
    change = FileChange(
        "tests/test_p.py",
        "tests/test_p.py",
        added=(DiffLine("tests/test_p.py", 3, "+", "@pytest.mark.parametrize('x', [1, 2])"),),
        removed=removed("tests/test_p.py", 3, "@pytest.mark.parametrize('x', [1, 2, 3])"),
    )
    found = check_integrity(
        given(
            base_ids=frozenset(f"tests/test_p.py::test_p[{i}]" for i in (1, 2, 3)),
            branch_ids=frozenset(f"tests/test_p.py::test_p[{i}]" for i in (1, 2)),
            changes=(change,),
            base_sources={"tests/test_p.py": source},
        )
    )
    [finding] = found.removed
    assert finding.test_id == "tests/test_p.py::test_p[3]"
    assert "[1, 2, 3]" in finding.lines[0].text


SKIPPED_SOURCE = (
    "import pytest\n\n\n"
    "def test_add():\n    assert True\n\n\n"
    "@pytest.mark.skip(reason='later')\n"
    "def test_mul():\n    assert False\n"
)


def skip_change(line: int, text: str) -> FileChange:
    path = "tests/test_calc.py"
    return FileChange(path, path, added=(DiffLine(path, line, "+", text),))


def test_an_added_skip_mark_on_an_existing_test_is_caught() -> None:
    ids = frozenset({"tests/test_calc.py::test_add", "tests/test_calc.py::test_mul"})
    found = check_integrity(
        given(
            branch_ids=ids,
            changes=(skip_change(8, "@pytest.mark.skip(reason='later')"),),
            branch_sources={"tests/test_calc.py": SKIPPED_SOURCE},
            branch_outcomes={
                "tests/test_calc.py::test_add": "passed",
                "tests/test_calc.py::test_mul": "skipped",
            },
        )
    )
    [finding] = found.skipped
    assert finding.test_id == "tests/test_calc.py::test_mul"
    assert finding.lines[0].line == 8
    assert found.objection is not None and "1 newly skipped" in found.objection


def test_a_skip_line_whose_test_still_ran_or_is_new_is_not_a_finding() -> None:
    ids = frozenset({"tests/test_calc.py::test_add", "tests/test_calc.py::test_mul"})
    ran = given(
        branch_ids=ids,
        changes=(skip_change(8, "@pytest.mark.skipif(sys.platform == 'win32', reason='')"),),
        branch_sources={"tests/test_calc.py": SKIPPED_SOURCE},
        branch_outcomes={"tests/test_calc.py::test_mul": "passed"},
    )
    assert check_integrity(ran).skipped == ()
    new = given(
        base_ids=frozenset({"tests/test_calc.py::test_add"}),
        branch_ids=ids,
        changes=(skip_change(8, "@pytest.mark.skip"),),
        branch_sources={"tests/test_calc.py": SKIPPED_SOURCE},
    )
    assert check_integrity(new).skipped == ()


def test_a_module_level_skip_or_a_skip_in_conftest_covers_every_test_below_it() -> None:
    ids = frozenset({"tests/test_calc.py::test_add", "tests/test_calc.py::test_mul"})
    module = given(
        branch_ids=ids,
        changes=(skip_change(2, "pytestmark = pytest.mark.skip"),),
        branch_sources={"tests/test_calc.py": "import pytest\npytestmark = pytest.mark.skip\n"},
    )
    assert len(check_integrity(module).skipped) == 2
    conftest = FileChange(
        "tests/conftest.py",
        "tests/conftest.py",
        added=(DiffLine("tests/conftest.py", 3, "+", "    pytest.skip('flaky infra')"),),
    )
    found = check_integrity(given(branch_ids=ids, changes=(conftest,)))
    assert len(found.skipped) == 2
    assert [ln.path for ln in found.config] == ["tests/conftest.py"]


def test_added_filters_in_pytest_config_explain_a_test_that_vanished() -> None:
    ini = "[pytest]\naddopts = -q --deselect tests/test_calc.py::test_mul\n"
    change = FileChange(
        "pytest.ini",
        "pytest.ini",
        added=(DiffLine("pytest.ini", 2, "+", ini.splitlines()[1]),),
        removed=(DiffLine("pytest.ini", 2, "-", "addopts = -q"),),
    )
    found = check_integrity(
        given(changes=(change,), base_sources={"tests/test_calc.py": TESTS, "pytest.ini": "x"})
    )
    [finding] = found.removed
    assert finding.lines[0].text.endswith("--deselect tests/test_calc.py::test_mul")


def test_only_the_pytest_sections_of_shared_config_files_count() -> None:
    setup_cfg = "[flake8]\nmax-line-length = 100\n\n[tool:pytest]\naddopts = -k 'not mul'\n"
    change = FileChange(
        "setup.cfg",
        "setup.cfg",
        added=(
            DiffLine("setup.cfg", 2, "+", "max-line-length = 100"),
            DiffLine("setup.cfg", 5, "+", "addopts = -k 'not mul'"),
        ),
    )
    found = check_integrity(
        given(
            branch_ids=given().base_ids, changes=(change,), branch_sources={"setup.cfg": setup_cfg}
        )
    )
    assert [ln.line for ln in found.config] == [5]
    assert found.objection is None  # config changes are evidence, never a FAIL by themselves


def test_the_guard_can_only_turn_a_pass_into_a_fail() -> None:
    passed = Verdict("PASS", "code-pass", "exit code 0")
    failed = Verdict("FAIL", "code-fail", "exit code 1")
    assert with_guard(passed, None) is passed and with_guard(failed, None) is failed
    assert with_guard(passed, "1 removed").result == "FAIL"
    assert with_guard(failed, "1 removed").result == "FAIL"


def test_opting_in_doubles_the_run_budget_a_jobs_lease_must_outlast() -> None:
    settings = Settings(contracts_file="", timeout_s=100)
    repos = {"plain": {"timeout_s": 300}, "guarded": {"timeout_s": 200, "integrity": True}}
    contracts = parse_contracts({"repos": repos}, settings)
    plain, guarded = contracts.for_repo("plain"), contracts.for_repo("guarded")
    assert plain is not None and (plain.integrity, plain.classify, plain.run_budget_s) == (
        False,
        False,
        300,
    )
    assert guarded is not None and guarded.run_budget_s == 400
    assert contracts.longest_timeout_s == 400


# --- in-process: real origins, real pytest ------------------------------------------


def guarded_world(world: WorldFactory, integrity: bool = True, **overrides: Any) -> World:
    contract = {"smoke_enabled": False, "integrity": integrity, "timeout_s": 120}
    return world(contracts={"guarded": contract}, **overrides)


def remove_on_branch(bare: Path, *paths: str) -> None:
    work = bare.parent / f"{bare.stem}-remove"
    git(bare.parent, "clone", "-q", "-b", "feature/x", str(bare), str(work))
    git(work, "rm", "-q", *paths)
    git(work, "commit", "-q", "-m", "remove")
    git(work, "push", "-q", "origin", "HEAD:refs/heads/feature/x")


def gate(w: World) -> tuple[dict[str, Any], str]:
    result = run_gate(job("guarded"), w.ctx, attempt=0, delivery_id="d")
    assert result.kind == "advanced"
    [(_, kwargs)] = w.sender.sent
    report = show_file(w.origins / "guarded.git", "feature/x", REPORT)
    assert parse_tests_verdict(report) is (kwargs["result"] == "PASS")
    return kwargs, report


def packet_of(report: str) -> dict[str, Any]:
    body = report.split("## Failure packet\n\n", 1)[1]
    fence, rest = body.split("json\n", 1)
    loaded: dict[str, Any] = json.loads(rest.split("\n" + fence + "\n", 1)[0])
    return loaded


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
def test_a_branch_that_deletes_its_failing_test_fails(
    world: WorldFactory, object_format: str
) -> None:
    w = guarded_world(world)
    without_mul = TESTS_WITHOUT_MUL
    make_origin(
        w.origins,
        "guarded",
        {"calc.py": BROKEN_MUL, "tests/test_calc.py": without_mul},
        main_files=MAIN,
        object_format=object_format,
    )
    kwargs, report = gate(w)
    assert (kwargs["result"], kwargs["outcome"], kwargs["exit_code"]) == ("FAIL", "code-fail", 0)
    assert "1 removed test(s): tests/test_calc.py::test_mul" in report
    assert "tests/test_calc.py:8: -def test_mul():" in report
    packet = kwargs["failure_packet"]
    assert packet == packet_of(report)
    assert packet["integrity"]["removed"][0]["id"] == "tests/test_calc.py::test_mul"
    assert packet["failing_tests"] == [] and packet["reproduce"] is None


def test_a_branch_that_skips_its_failing_test_fails(world: WorldFactory) -> None:
    w = guarded_world(world)
    skipped = "import pytest\n" + TESTS.replace(
        "def test_mul", "@pytest.mark.skip(reason='flaky')\ndef test_mul"
    )
    make_origin(
        w.origins,
        "guarded",
        {"calc.py": BROKEN_MUL, "tests/test_calc.py": skipped},
        main_files=MAIN,
    )
    kwargs, report = gate(w)
    assert (kwargs["result"], kwargs["exit_code"]) == ("FAIL", 0)
    assert "1 newly skipped test(s): tests/test_calc.py::test_mul" in report
    assert "+@pytest.mark.skip(reason='flaky')" in report
    assert kwargs["failure_packet"]["integrity"]["skipped"][0]["id"].endswith("::test_mul")


def test_a_branch_that_renames_a_test_file_passes(world: WorldFactory) -> None:
    w = guarded_world(world)
    origin = make_origin(w.origins, "guarded", {"tests/test_arithmetic.py": TESTS}, main_files=MAIN)
    remove_on_branch(origin, "tests/test_calc.py")
    kwargs, report = gate(w)
    assert kwargs["result"] == "PASS", report
    assert "failure_packet" not in kwargs
    assert "No test of the merge base was removed or newly skipped." in report
    assert "`tests/test_calc.py::test_mul` -> `tests/test_arithmetic.py::test_mul`" in report


def test_a_branch_that_deletes_code_together_with_its_test_passes(world: WorldFactory) -> None:
    w = guarded_world(world)
    without_mul = TESTS_WITHOUT_MUL
    make_origin(
        w.origins,
        "guarded",
        {
            "calc.py": ONLY_ADD,
            "tests/test_calc.py": without_mul.replace("add, mul", "add"),
        },
        main_files=MAIN,
    )
    kwargs, report = gate(w)
    assert kwargs["result"] == "PASS", report
    assert "calc.py:5 deletes `mul`, which the test used" in report


def test_a_deselect_added_to_pytest_ini_fails_and_is_named(world: WorldFactory) -> None:
    w = guarded_world(world)
    ini = "[pytest]\naddopts = --deselect tests/test_calc.py::test_mul\n"
    make_origin(
        w.origins,
        "guarded",
        {"calc.py": BROKEN_MUL, "pytest.ini": ini},
        main_files={**MAIN, "pytest.ini": "[pytest]\n"},
    )
    kwargs, report = gate(w)
    assert (kwargs["result"], kwargs["exit_code"]) == ("FAIL", 0)
    assert "pytest.ini:2: +addopts = --deselect tests/test_calc.py::test_mul" in report


def test_without_the_option_a_deleted_test_passes_as_before(world: WorldFactory) -> None:
    w = guarded_world(world, integrity=False)
    without_mul = TESTS_WITHOUT_MUL
    make_origin(
        w.origins,
        "guarded",
        {"calc.py": BROKEN_MUL, "tests/test_calc.py": without_mul},
        main_files=MAIN,
    )
    kwargs, report = gate(w)
    assert kwargs["result"] == "PASS"
    assert "failure_packet" not in kwargs and "integrity" not in report.lower()


def test_no_merge_base_with_main_is_reported_and_leaves_the_verdict_alone(
    world: WorldFactory,
) -> None:
    w = guarded_world(world)
    origin = make_origin(w.origins, "guarded", {"tests/test_ok.py": "def test_ok():\n    pass\n"})
    subprocess.run(
        ["git", "update-ref", "-d", "refs/heads/main"], cwd=origin, check=True, capture_output=True
    )
    kwargs, report = gate(w)
    assert kwargs["result"] == "PASS"
    assert "**Not checked:**" in report


# --- a suite that tampers with what the guard reads after it ran ---------------------
# Each branch hides a failing test (skips or deletes it) and carries a second test file
# that, while the suite runs, rewrites what the guard would read afterwards: the
# worktree's `.git` (so that an uncontained `git diff` there reads the suite's own
# repository, or none), the test file on disk (so that its text or a later collection
# no longer shows the change). The guard must judge the commit, not the worktree.

SKIPPED = "import pytest\n" + TESTS.replace(
    "def test_mul", "@pytest.mark.skip(reason='flaky')\ndef test_mul"
)
_ROOT = "ROOT = __import__('pathlib').Path(__file__).resolve().parents[1]\n"
GARBAGE_GIT = _ROOT + (
    "\n\ndef test_tidy():\n"
    "    (ROOT / '.git').unlink()\n"
    "    (ROOT / '.git').write_text('this is not a repository\\n')\n"
)
NO_GIT = _ROOT + "\n\ndef test_tidy():\n    (ROOT / '.git').unlink()\n"
# The worktree's .git now names a repository of the suite's: the mirror's objects,
# and a replace ref that makes the tested commit read as its merge base (no diff).
REPLACED_HISTORY = _ROOT + (
    "import subprocess\n\n\n"
    "def git(*args):\n"
    "    return subprocess.run(['git', *args], cwd=ROOT, check=True, capture_output=True,\n"
    "                          text=True).stdout.strip()\n\n\n"
    "def test_tidy():\n"
    "    head, base = git('rev-parse', 'HEAD'), git('merge-base', 'HEAD', 'main')\n"
    "    objects = git('rev-parse', '--path-format=absolute', '--git-common-dir')\n"
    "    fake = ROOT / '.fake'\n"
    "    git('init', '-q', '--bare', str(fake))\n"
    "    (fake / 'objects/info/alternates').write_text(objects + '/objects\\n')\n"
    "    (fake / 'refs/replace').mkdir(parents=True, exist_ok=True)\n"
    "    (fake / 'refs/replace' / head).write_text(base + '\\n')\n"
    "    (ROOT / '.git').unlink()\n"
    "    (ROOT / '.git').write_text(f'gitdir: {fake}\\n')\n"
)
# The skip line's number now falls inside test_add, which passed.
REWRITTEN_SOURCE = _ROOT + (
    "\n\ndef test_tidy():\n"
    "    (ROOT / 'tests/test_calc.py').write_text(\n"
    + repr(
        "import pytest\nfrom calc import add, mul\n\n\ndef test_add():\n"
        "    assert add(1, 2) == 3\n    x = 1\n    x = 2\n    x = 3\n    assert x\n\n\n"
        "def test_mul():\n    assert mul(2, 3) == 6\n"
    )
    + ")\n"
)
# The deleted test is back on disk, for a collection made after the run.
RESTORED_TEST = _ROOT + (
    f"\n\ndef test_tidy():\n    (ROOT / 'tests/test_calc.py').write_text({TESTS!r})\n"
)


@pytest.mark.parametrize(
    ("hidden", "tamper"),
    [
        ("skipped", GARBAGE_GIT),
        ("skipped", NO_GIT),
        ("skipped", REPLACED_HISTORY),
        ("skipped", REWRITTEN_SOURCE),
        ("deleted", RESTORED_TEST),
        ("deleted", REPLACED_HISTORY),
    ],
    ids=[
        "garbage-git",
        "no-git",
        "replaced-history",
        "rewritten-source",
        "restored-test",
        "deleted-replaced-history",
    ],
)
def test_a_suite_that_tampers_with_its_worktree_does_not_blind_the_guard(
    world: WorldFactory, hidden: str, tamper: str
) -> None:
    w = guarded_world(world, containment="required")
    tests = SKIPPED if hidden == "skipped" else TESTS_WITHOUT_MUL
    make_origin(
        w.origins,
        "guarded",
        {"calc.py": BROKEN_MUL, "tests/test_calc.py": tests, "tests/test_zz_tidy.py": tamper},
        main_files=MAIN,
    )
    kwargs, report = gate(w)
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "code-fail"), report
    found = kwargs["failure_packet"]["integrity"]
    assert [f["id"] for f in found[hidden if hidden == "skipped" else "removed"]] == [
        "tests/test_calc.py::test_mul"
    ], report
    assert found["incomplete"] is None, report
