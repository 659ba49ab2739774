"""Property tests: any job either hands back cleanly or names a report path inside the
worktree; any report the runner writes reads back through the gate as its verdict."""

from __future__ import annotations

import string
from datetime import date
from pathlib import PurePosixPath
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.job import Job, JobRejected, parse_job
from worker.report.orchestrator_gate import parse_tests_verdict
from worker.report.render import ReportFacts, render_report
from worker.smoke import SmokeResult
from worker.verdict import from_exit_code, infrastructure_fail, with_smoke

names = st.one_of(
    st.text(min_size=0, max_size=120),
    st.text(alphabet=string.ascii_letters + string.digits + "._-/\\\n ", max_size=40),
    st.sampled_from(["..", "../x", "a/../b", ".", "-rf", "WI-1", "ok.name", "x..y"]),
)
values = st.one_of(names, st.integers(), st.none(), st.booleans(), st.floats())


@settings(max_examples=400, deadline=None)
@given(
    task_id=values,
    repo=names,
    work_item_id=names,
    branch=names,
    commit=values,
    agent=st.sampled_from(["tester", "developer", ""]),
    stage=st.sampled_from(["testing", "review", ""]),
)
def test_any_job_is_rejected_cleanly_or_stays_inside_its_worktree(
    task_id: Any,
    repo: Any,
    work_item_id: Any,
    branch: Any,
    commit: Any,
    agent: str,
    stage: str,
) -> None:
    raw = {
        "task_id": task_id,
        "repo": repo,
        "work_item_id": work_item_id,
        "branch": branch,
        "commit": commit,
        "agent": agent,
        "stage": stage,
    }
    parsed = parse_job(raw)
    if isinstance(parsed, JobRejected):
        assert parsed.reason.startswith("invalid job: ")
        return
    assert isinstance(parsed, Job)
    path = PurePosixPath(parsed.report_path)
    assert not path.is_absolute()
    assert ".." not in path.parts
    assert path.parts[:2] == ("docs", "work-items") and len(path.parts) == 4
    assert not parsed.branch.startswith("-")


@settings(max_examples=300, deadline=None)
@given(
    exit_code=st.one_of(st.none(), st.integers(min_value=-64, max_value=300)),
    smoke_state=st.sampled_from(["ok", "failed", "skipped"]),
    smoke_detail=st.text(max_size=200),
    tail=st.text(max_size=3000),
    failing=st.lists(st.text(max_size=80), max_size=60),
    never_ran=st.booleans(),
)
def test_any_report_reads_back_through_the_gate_as_its_verdict(
    exit_code: int | None,
    smoke_state: str,
    smoke_detail: str,
    tail: str,
    failing: list[str],
    never_ran: bool,
) -> None:
    smoke = SmokeResult(smoke_state, smoke_detail)  # type: ignore[arg-type]
    verdict = (
        infrastructure_fail(smoke_detail, 3)
        if never_ran
        else with_smoke(from_exit_code(exit_code), smoke)
    )
    text = render_report(
        ReportFacts(
            work_item_id="WI-1",
            repo="r",
            branch="b",
            commit=None,
            verdict=verdict,
            exit_code=None if never_ran else exit_code,
            smoke_state=smoke.state,
            smoke_detail=smoke.detail,
            command="python -m pytest tests/ -q",
            created_at=date(2026, 11, 24),
            failing_tests=tuple(failing),
            output_tail=tail,
        )
    )
    assert parse_tests_verdict(text) is (verdict.result == "PASS")
