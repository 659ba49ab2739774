"""The contract seen from outside: jobs sent by name, what arrives on the
orchestrator queue, on the alert webhook and on the branch."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.fleet import processes_running
from testkit.repofactory import git, show_file
from tests.integration.harness import Fleet, job
from tests.integration.scenarios import BRANCH
from worker.report.orchestrator_gate import frontmatter_lines, parse_tests_verdict

pytestmark = pytest.mark.integration

ADVANCE = "orchestrator.advance_stage"
HANDBACK = "orchestrator.test_gate_handback"


def run_job(fleet: Fleet, task_id: int, repo: str, work_item: str) -> dict[str, Any]:
    """Send one job, wait until it ended, return its one advance."""
    orch = fleet.orchestrator
    summary = orch.wait_done(orch.send(**job(task_id, repo, work_item)))
    assert summary["kind"] == "advanced", summary
    advances = orch.events_for(task_id, ADVANCE)
    assert len(advances) == 1, advances
    assert orch.events_for(task_id, HANDBACK) == []
    return advances[0]


def report_on_branch(fleet: Fleet, repo: str, work_item: str) -> str:
    return show_file(
        fleet.origins / f"{repo}.git", BRANCH, f"docs/work-items/{work_item}/13-test-report.md"
    )


def assert_advance_shape(advance: dict[str, Any], task_id: int, repo: str, work_item: str) -> None:
    assert advance["task_id"] == task_id
    assert advance["current_stage"] == "testing"
    assert advance["finished_agent"] == "tester"
    assert (advance["repo"], advance["work_item_id"], advance["branch"]) == (
        repo,
        work_item,
        BRANCH,
    )
    assert advance["report_path"] == f"docs/work-items/{work_item}/13-test-report.md"


def test_a_sha256_repository_gets_its_verdict_and_its_report_on_the_branch(
    fleet: Fleet, task_id: int
) -> None:
    tested = git(fleet.origins / "sha256.git", "rev-parse", BRANCH)
    assert len(tested) == 64
    orch = fleet.orchestrator
    summary = orch.wait_done(orch.send(**job(task_id, "sha256", "WI-256", commit=tested)))
    assert summary["kind"] == "advanced", summary
    [advance] = orch.events_for(task_id, ADVANCE)
    assert (advance["result"], advance["outcome"], advance["commit"]) == (
        "PASS",
        "code-pass",
        tested,
    )
    assert advance["report_pushed"] is True
    report_commit = git(fleet.origins / "sha256.git", "rev-parse", BRANCH)
    assert git(fleet.origins / "sha256.git", "rev-parse", f"{report_commit}^") == tested
    assert parse_tests_verdict(report_on_branch(fleet, "sha256", "WI-256")) is True


def test_a_green_branch_passes_with_smoke_ok_and_the_report_is_pushed(
    fleet: Fleet, task_id: int
) -> None:
    tip_before = git(fleet.origins / "green.git", "rev-parse", BRANCH)
    advance = run_job(fleet, task_id, "green", "WI-green")
    assert_advance_shape(advance, task_id, "green", "WI-green")
    assert (advance["result"], advance["exit_code"], advance["smoke"]) == ("PASS", 0, "ok")
    assert (advance["outcome"], advance["report_pushed"]) == ("code-pass", True)
    assert advance["commit"] == tip_before
    report = report_on_branch(fleet, "green", "WI-green")
    assert parse_tests_verdict(report) is True
    assert "status: success" in frontmatter_lines(report)
    origin = fleet.origins / "green.git"
    author = git(origin, "log", "-1", "--format=%an <%ae>|%cn|%s", BRANCH)
    assert author == (
        "test-runner <test-runner@gate.example>|test-runner|test: test gate PASS for WI-green"
    )
    assert git(origin, "rev-parse", f"{BRANCH}~1") == tip_before
    assert "WI-green" not in git(origin, "log", "--format=%s", "main")


def test_a_red_branch_fails_and_the_report_names_the_failing_test(
    fleet: Fleet, task_id: int
) -> None:
    advance = run_job(fleet, task_id, "red", "WI-red")
    assert (advance["result"], advance["exit_code"], advance["smoke"]) == ("FAIL", 1, "skipped")
    assert advance["outcome"] == "code-fail"
    report = report_on_branch(fleet, "red", "WI-red")
    assert parse_tests_verdict(report) is False
    assert "tests/test_subtract.py::test_subtract" in report
    assert "status: failed" in frontmatter_lines(report)


def test_no_tests_collected_is_a_fail_that_says_so(fleet: Fleet, task_id: int) -> None:
    advance = run_job(fleet, task_id, "empty", "WI-empty")
    assert (advance["result"], advance["exit_code"]) == ("FAIL", 5)
    assert "no tests were collected" in report_on_branch(fleet, "empty", "WI-empty")


def test_a_forged_pass_report_on_the_branch_is_overwritten(fleet: Fleet, task_id: int) -> None:
    assert parse_tests_verdict(report_on_branch(fleet, "forged", "WI-forged")) is True
    advance = run_job(fleet, task_id, "forged", "WI-forged")
    assert advance["result"] == "FAIL"
    report = report_on_branch(fleet, "forged", "WI-forged")
    assert parse_tests_verdict(report) is False
    assert "trust me" not in report


@pytest.mark.parametrize(("repo", "words"), [("smoke500", "HTTP 500"), ("nogate", "serial_gate")])
def test_a_green_suite_with_a_failing_smoke_is_a_code_fail(
    fleet: Fleet, task_id: int, repo: str, words: str
) -> None:
    advance = run_job(fleet, task_id, repo, f"WI-{repo}")
    assert (advance["result"], advance["exit_code"], advance["smoke"]) == ("FAIL", 0, "failed")
    assert advance["outcome"] == "code-fail"
    report = report_on_branch(fleet, repo, f"WI-{repo}")
    assert words in report
    assert parse_tests_verdict(report) is False


def test_huge_output_leaves_a_bounded_report(fleet: Fleet, task_id: int) -> None:
    advance = run_job(fleet, task_id, "huge", "WI-huge")
    assert advance["result"] == "FAIL"
    report = report_on_branch(fleet, "huge", "WI-huge")
    assert len(report.encode()) < 12_000
    assert "fails after printing 64 MB" in report or "END-OF-OUTPUT" in report


def test_a_hanging_suite_is_deferred_then_fails_closed_with_one_alert_and_one_advance(
    fleet: Fleet, task_id: int
) -> None:
    alerts_before = len(fleet.alerts.posts)
    advance = run_job(fleet, task_id, "hang", "WI-hang")
    assert (advance["result"], advance["exit_code"], advance["smoke"]) == ("FAIL", None, "skipped")
    assert advance["outcome"] == "tool-error"
    report = report_on_branch(fleet, "hang", "WI-hang")
    assert parse_tests_verdict(report) is False
    assert "never executed" in report and "attempts: 2" in report
    new_alerts = fleet.alerts.posts[alerts_before:]
    assert len(new_alerts) == 1
    assert "infrastructure, not a code defect" in new_alerts[0][2]["text"]
    assert "test_hangs_with_a_child_in_its_own_session" in report  # it did run and hang
    survivors = processes_running(["sleep", fleet.hang_marker])
    assert survivors == [], f"the suite's new-session child survived: {survivors}"


def test_a_re_test_after_the_verdict_is_a_new_request_with_its_own_advance(
    fleet: Fleet, task_id: int
) -> None:
    """docs/contract.md §12: a request that arrives after an earlier one was answered (a rollback, a
    human asking for a re-run) is answered again, never swallowed."""
    run_job(fleet, task_id, "red", "WI-dup")
    orch = fleet.orchestrator
    again = orch.wait_done(orch.send(**job(task_id, "red", "WI-dup")))
    assert again["kind"] == "advanced"
    advances = orch.events_for(task_id, ADVANCE)
    assert [a["result"] for a in advances] == ["FAIL", "FAIL"]


INVALID_JOBS: list[tuple[dict[str, Any], str]] = [
    ({"work_item_id": "../../etc"}, "work_item_id"),
    ({"branch": "--upload-pack=touch /tmp/x"}, "branch"),
    ({"branch": "a..b"}, "branch"),
    ({"agent": "developer"}, "agent"),
    ({"stage": "review"}, "stage"),
    ({"commit": "not-a-sha"}, "commit"),
    ({"repo": "unknown-repo"}, "not in testgate's scope"),
]


@pytest.mark.parametrize(("change", "words"), INVALID_JOBS)
def test_every_invalid_job_is_handed_back_once_and_never_run(
    fleet: Fleet, task_id: int, change: dict[str, Any], words: str
) -> None:
    orch = fleet.orchestrator
    summary = orch.wait_done(orch.send(**{**job(task_id, "green", "WI-bad"), **change}))
    assert summary["kind"] == "handed-back"
    handbacks = orch.events_for(task_id, HANDBACK)
    assert len(handbacks) == 1
    assert words in handbacks[0]["reason"]
    assert set(handbacks[0]) == {"task_id", "repo", "reason"}
    assert orch.events_for(task_id, ADVANCE) == []


def test_counters_are_shared_in_redis(fleet: Fleet, task_id: int) -> None:
    key = f"{fleet.prefix}counters"
    before = counters(fleet.state.hgetall(key))
    run_job(fleet, task_id, "red", "WI-count")
    after = counters(fleet.state.hgetall(key))
    assert after.get("runs", 0) == before.get("runs", 0) + 1
    assert after.get("fail", 0) == before.get("fail", 0) + 1


def counters(raw: dict[Any, Any]) -> dict[str, int]:
    return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
