"""`testgate sample` + `testgate run`: the README's first command, embedded (no Redis)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fleet import run_cli
from tests.repofactory import git
from worker.cli.sample import GREEN_BRANCH, RED_BRANCH
from worker.report.orchestrator_gate import parse_tests_verdict

pytestmark = pytest.mark.timeout(120)


# No Redis may be needed: every Redis setting points at a closed port.
NO_REDIS = {
    "TESTGATE_BROKER_URL": "redis://127.0.0.1:1/0",
    "TESTGATE_RESULT_BACKEND": "redis://127.0.0.1:1/1",
}


def run_gate(
    sample: Path, branch: str, work_item: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """`testgate run` on the sample repo, with no Redis reachable."""
    return run_cli(
        "run",
        str(sample),
        "--branch",
        branch,
        "--work-item",
        work_item,
        "--workdir",
        str(tmp_path / "work"),
        env=NO_REDIS,
        cwd=tmp_path,
    )


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    done = run_cli("sample", str(tmp_path / "sample"), env=NO_REDIS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "sample"


def test_run_on_a_green_branch_passes_and_commits_the_report(sample: Path, tmp_path: Path) -> None:
    done = run_gate(sample, GREEN_BRANCH, "WI-1", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: PASS" in done.stdout
    assert "event on the orchestrator queue: orchestrator.advance_stage(" in done.stdout
    report = git(sample, "show", f"{GREEN_BRANCH}:docs/work-items/WI-1/13-test-report.md")
    assert parse_tests_verdict(report) is True
    assert git(sample, "status", "--porcelain") == ""  # the user's checkout is untouched


def test_run_on_a_red_branch_fails_with_exit_code_1(sample: Path, tmp_path: Path) -> None:
    done = run_gate(sample, RED_BRANCH, "WI-2", tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verdict: FAIL" in done.stdout
    assert "tests/test_subtract.py::test_subtract" in git(
        sample, "show", f"{RED_BRANCH}:docs/work-items/WI-2/13-test-report.md"
    )


def test_run_with_a_bad_work_item_is_handed_back(sample: Path, tmp_path: Path) -> None:
    done = run_gate(sample, GREEN_BRANCH, "../x", tmp_path)
    assert done.returncode == 2
    assert "orchestrator.test_gate_handback" in done.stdout
    assert "work_item_id" in done.stdout
