"""What the trusted run takes from the trusted ref, and how its findings are judged
(worker/review/trusted_files.py): pure functions over tree listings and records."""

from __future__ import annotations

import pytest

from worker.git.committed import Entry
from worker.review.trusted_files import (
    changes_infra,
    collect_skip_objection,
    config_candidates,
    framework_objection,
    holds_pytest_config,
    infra_of,
    pytest_args,
    trusted_config_path,
    untrusted_skips,
)
from worker.suite.probe import TestOutcome

ROOT = "/work/job/tree"


def tree(*paths: str, sha: str = "1") -> dict[str, Entry]:
    return {p: Entry("100644", sha, 1) for p in paths}


def test_the_infrastructure_is_the_target_every_conftest_and_what_shadows_pytest() -> None:
    files = tree(
        "calc.py",
        "pkg/conftest.py",
        "conftest.py",
        "tests/helpers.py",
        "tests/data/x.json",
        "tests/test_a.py",
        "pytest.py",
        "_pytest/x.py",
        "sitecustomize.py",
        "other/test_b.py",
    )
    assert sorted(infra_of(files, "tests/")) == [
        "_pytest/x.py",
        "conftest.py",
        "pkg/conftest.py",
        "pytest.py",
        "sitecustomize.py",
        "tests/data/x.json",
        "tests/helpers.py",
        "tests/test_a.py",
    ]
    # The whole repository as the target: its test files, not its code.
    assert "other/test_b.py" in infra_of(files, ".") and "calc.py" not in infra_of(files, ".")


def test_configuration_is_looked_for_from_the_target_up_in_pytests_order() -> None:
    assert config_candidates("tests/unit")[:2] == [
        "tests/unit/pytest.ini",
        "tests/unit/.pytest.ini",
    ]
    assert config_candidates("tests/unit")[-5:] == [
        "pytest.ini",
        ".pytest.ini",
        "pyproject.toml",
        "tox.ini",
        "setup.cfg",
    ]


@pytest.mark.parametrize(
    ("path", "text", "holds"),
    [
        ("pytest.ini", "", True),
        ("pyproject.toml", "[project]\nname = 'x'\n", False),
        ("pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-q'\n", True),
        ("pyproject.toml", "not toml [", False),
        ("tox.ini", "[tox]\n", False),
        ("tox.ini", "[pytest]\n", True),
        ("setup.cfg", "[tool:pytest]\n", True),
        ("setup.cfg", "[metadata]\n", False),
    ],
)
def test_a_configuration_file_counts_only_with_pytests_section(
    path: str, text: str, holds: bool
) -> None:
    assert holds_pytest_config(path, text) is holds


def test_the_trusted_copy_sits_next_to_the_original_and_is_read_as_its_kind() -> None:
    assert trusted_config_path("pyproject.toml") == ".testgate-trusted.toml"
    assert trusted_config_path("tests/tox.ini") == "tests/.testgate-trusted.ini"
    assert trusted_config_path("setup.cfg") == ".testgate-trusted.cfg"
    assert trusted_config_path(None) == ".testgate-trusted.ini"
    assert pytest_args("tests/.testgate-trusted.ini") == (
        "-c",
        "tests/.testgate-trusted.ini",
        "--rootdir=tests",
        "--confcutdir=tests",
    )


def test_a_branch_changes_the_infrastructure_by_any_test_conftest_or_config_it_differs_in() -> None:
    base = tree("calc.py", "tests/test_a.py", "pyproject.toml")
    configs = config_candidates("tests/")
    assert not changes_infra(base, {**base, "calc.py": Entry("100644", "2", 1)}, "tests/", configs)
    for extra in ("src/conftest.py", "tests/test_new.py", "pytest.ini"):
        assert changes_infra(base, {**base, **tree(extra)}, "tests/", configs), extra
    edited = {**base, "pyproject.toml": Entry("100644", "2", 1)}
    assert changes_infra(base, edited, "tests/", configs)


def test_a_skip_counts_only_from_a_trusted_file_or_a_mark_the_trusted_text_names() -> None:
    trusted = {
        "tests/test_a.py": b"@pytest.mark.skip\ndef test_later(): ...",
        "tests/test_b.py": b"def test_b(): ...",
        "tests/conftest.py": b"def pytest_runtest_setup(item): no_db(item)",
    }
    outcomes = [
        TestOutcome("tests/test_a.py::test_later", "skipped", origin="mark"),
        TestOutcome("tests/test_b.py::test_db", "skipped", origin=f"{ROOT}/tests/conftest.py"),
        TestOutcome("tests/test_b.py::test_p", "passed"),
        TestOutcome("tests/test_b.py::test_b", "skipped", origin="mark"),
        TestOutcome("tests/test_b.py::test_c", "xfailed", origin=f"{ROOT}/calc.py"),
        TestOutcome("tests/test_a.py::test_d", "xfailed", origin="a mark added while it ran"),
        TestOutcome("tests/test_b.py::test_e", "skipped", origin="/usr/lib/python3/x.py"),
    ]
    assert untrusted_skips(outcomes, ROOT, trusted) == [
        "tests/test_b.py::test_b skipped by a mark no trusted file sets",
        "tests/test_b.py::test_c xfailed by calc.py",
        "tests/test_a.py::test_d xfailed by a mark added while it ran",
        "tests/test_b.py::test_e skipped by /usr/lib/python3/x.py",
    ]


def test_the_framework_counts_as_modified_by_any_replacement_or_an_untrusted_hook() -> None:
    trusted = {"tests/conftest.py": b""}
    fine = [
        ("pytest_runtest_makereport", f"{ROOT}/tests/conftest.py"),
        ("pytest_runtest_logreport", "/venv/site-packages/pytest_timeout.py"),
    ]
    assert framework_objection(fine, ROOT, trusted) is None
    hooked = [*fine, ("pytest_runtest_makereport", f"{ROOT}/calc.py")]
    assert framework_objection(hooked, ROOT, trusted) == (
        "the test framework was modified by calc.py (pytest_runtest_makereport)"
    )
    replaced = [("TestReport.from_item_and_call", f"{ROOT}/tests/conftest.py")]
    assert framework_objection(replaced, ROOT, trusted) == (
        "the test framework was modified by tests/conftest.py (TestReport.from_item_and_call)"
    )
    assert framework_objection([("pytest_runtest_logreport", "<string>")], ROOT, trusted) == (
        "the test framework was modified by <string> (pytest_runtest_logreport)"
    )


def test_a_test_module_skipped_whole_counts_only_when_a_trusted_file_skipped_it() -> None:
    trusted = {"tests/test_db.py": b"pytest.importorskip('psycopg')"}
    fine = [("tests/test_db.py", f"{ROOT}/tests/test_db.py")]
    assert collect_skip_objection(fine, ROOT, trusted) is None
    gamed = [*fine, ("tests/test_calc.py", f"{ROOT}/calc.py"), ("tests/test_x.py", "")]
    assert collect_skip_objection(gamed, ROOT, trusted) == (
        "2 trusted test module(s) were skipped whole: tests/test_calc.py by calc.py; "
        "tests/test_x.py by unknown code"
    )
