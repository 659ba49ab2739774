"""The report commit: system identity, feature branch only, never forced."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.scenarios import FORGED_REPORT
from tests.repofactory import branch_tip, git, make_origin, push_commit, show_file
from worker.git.checkout import checkout
from worker.report.publish import GitIdentity, PublishResult, publish_report

REPORT = "docs/work-items/WI-1/13-test-report.md"


@pytest.fixture
def identity(tmp_path: Path) -> GitIdentity:
    return GitIdentity("test-runner", "test-runner@gate.example", tmp_path / "home")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origins", "app", {REPORT: FORGED_REPORT, "a.txt": "a"})


def publish(
    tmp_path: Path,
    identity: GitIdentity,
    branch: str = "feature/x",
    rel_path: str = REPORT,
    before_push: bool = False,
) -> PublishResult:
    with checkout(
        "app",
        "feature/x",
        None,
        workdir=tmp_path / "work",
        url_template=str(tmp_path / "origins" / "{repo}.git"),
    ) as co:
        if before_push:
            push_commit(
                tmp_path / "origins" / "app.git", "feature/x", {"b.txt": "b"}, "someone else pushed"
            )
        return publish_report(
            co.path,
            rel_path,
            "---\nresult: FAIL\n---\nreal\n",
            branch=branch,
            message="test: test gate FAIL for WI-1",
            identity=identity,
        )


def test_the_report_lands_on_the_feature_branch_as_test_runner(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    main_before = branch_tip(origin, "main")
    result = publish(tmp_path, identity)
    assert (result.written, result.pushed) == (True, True)
    assert branch_tip(origin, "feature/x") == result.report_commit
    assert show_file(origin, "feature/x", REPORT) == "---\nresult: FAIL\n---\nreal"
    assert git(origin, "log", "-1", "--format=%an|%ae|%cn|%ce|%s", "feature/x") == (
        "test-runner|test-runner@gate.example|test-runner|test-runner@gate.example|"
        "test: test gate FAIL for WI-1"
    )
    assert branch_tip(origin, "main") == main_before


def test_a_second_identical_report_makes_no_new_commit(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    first = publish(tmp_path, identity)
    second = publish(tmp_path, identity)
    assert second.pushed and second.report_commit == first.report_commit


def test_a_report_is_never_pushed_to_main(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    main_before = branch_tip(origin, "main")
    result = publish(tmp_path, identity, branch="main")
    assert result.pushed is False and "never push to main" in result.detail
    assert branch_tip(origin, "main") == main_before


def test_a_moved_branch_rejects_the_push_and_is_not_forced(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    result = publish(tmp_path, identity, before_push=True)
    assert result.written and not result.pushed
    assert "not pushed" in result.detail
    assert git(origin, "log", "-1", "--format=%s", "feature/x") == "someone else pushed"


def test_a_path_outside_the_worktree_is_refused(
    tmp_path: Path, origin: Path, identity: GitIdentity
) -> None:
    result = publish(tmp_path, identity, rel_path="../escaped.md")
    assert (result.written, result.pushed) == (False, False)
    assert not (tmp_path / "work" / "jobs" / "escaped.md").exists()
