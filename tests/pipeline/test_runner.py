"""The gate's flow without a broker: real git origins and real pytest runs, an
in-memory state and a recording event sender."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.repofactory import make_origin, show_file
from tests.gateworld import WorldFactory, job
from tests.httpfixtures import Recorder, http_server
from worker.celery_adapter.app import app
from worker.celery_adapter.runtime import configure
from worker.celery_adapter.tasks import run_test_gate
from worker.contracts import Contracts, TestContract
from worker.errors import EventDeliveryError, StateUnavailable
from worker.notify.events import WebhookSender
from worker.pipeline.runner import GateContext, run_gate
from worker.report.orchestrator_gate import parse_tests_verdict
from worker.state import MemoryState

PASSING = {"tests/test_ok.py": "def test_ok():\n    assert True\n"}
FAILING = {"tests/test_bad.py": "def test_bad():\n    assert 1 == 2\n"}


def test_a_passing_branch_advances_once_with_a_pass_report(world: WorldFactory) -> None:
    w = world()
    origin = make_origin(w.origins, "passing", PASSING)
    result = run_gate(job("passing"), w.ctx, attempt=0, delivery_id="d1")
    assert result.kind == "advanced"
    [(name, kwargs)] = w.sender.sent
    assert name == "orchestrator.advance_stage"
    assert (kwargs["result"], kwargs["outcome"], kwargs["smoke"]) == (
        "PASS",
        "code-pass",
        "skipped",
    )
    report = show_file(origin, "feature/x", "docs/work-items/WI-5/13-test-report.md")
    assert parse_tests_verdict(report) is True
    assert w.state.counters()["pass"] == 1


def test_a_redelivered_job_after_it_finished_does_not_advance_twice(world: WorldFactory) -> None:
    w = world()
    make_origin(w.origins, "failing", FAILING)
    first = run_gate(job("failing"), w.ctx, attempt=0, delivery_id="d1")
    again = run_gate(job("failing"), w.ctx, attempt=0, delivery_id="d1")
    assert (first.kind, again.kind) == ("advanced", "already-done")
    assert len(w.sender.sent) == 1
    assert w.state.counters()["redelivered"] == 1


def test_a_new_request_at_the_same_commit_after_a_verdict_runs_and_advances_again(
    world: WorldFactory,
) -> None:
    """A re-test (a rollback after a flaky failure, a human re-run) is a new message: it
    gets its own verdict and advance; only the answered message itself is not answered
    again."""
    w = world()
    make_origin(w.origins, "failing", FAILING)
    first = run_gate(job("failing"), w.ctx, attempt=0, delivery_id="d1")
    commit = w.sender.sent[0][1]["commit"]
    retest = run_gate(job("failing", commit=commit), w.ctx, attempt=0, delivery_id="d2")
    assert (first.kind, retest.kind) == ("advanced", "advanced")
    assert [kw["commit"] for _, kw in w.sender.sent] == [commit, commit]
    assert run_gate(job("failing"), w.ctx, attempt=0, delivery_id="d2").kind == "already-done"
    assert len(w.sender.sent) == 2


def test_a_second_delivery_while_one_is_running_is_dropped(world: WorldFactory) -> None:
    w = world()
    make_origin(w.origins, "passing", PASSING)
    w.state.acquire_run("5:feature/x", "d1/other-delivery", 60)
    result = run_gate(job("passing"), w.ctx, attempt=0, delivery_id="d2")
    assert result.kind == "duplicate"
    assert w.sender.sent == []


def test_a_suite_that_cannot_start_is_deferred_then_fails_closed(
    tmp_path: Path, world: WorldFactory
) -> None:
    w = world(python=str(tmp_path / "no-such-python"))
    origin = make_origin(w.origins, "passing", PASSING)
    deferred = run_gate(job("passing"), w.ctx, attempt=0, delivery_id="d1")
    assert deferred.kind == "deferred"
    assert w.sender.sent == [] and w.alerts == []
    final = run_gate(job("passing"), w.ctx, attempt=1, delivery_id="d1")
    assert final.kind == "advanced"
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"], kwargs["exit_code"]) == (
        "FAIL",
        "tool-error",
        None,
    )
    assert len(w.alerts) == 1 and "infrastructure, not a code defect" in w.alerts[0]
    report = show_file(origin, "feature/x", "docs/work-items/WI-5/13-test-report.md")
    assert parse_tests_verdict(report) is False
    assert "never executed" in report
    counters = w.state.counters()
    assert (counters["tool_error"], counters["deferred"], counters["fail"]) == (2, 1, 1)


def test_a_missing_origin_is_deferred_and_fails_closed_without_a_report(
    world: WorldFactory,
) -> None:
    w = world()
    assert run_gate(job("passing"), w.ctx, attempt=0, delivery_id="d").kind == "deferred"
    final = run_gate(job("passing"), w.ctx, attempt=1, delivery_id="d")
    assert final.kind == "advanced"
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["report_pushed"]) == ("FAIL", False)
    assert "checkout failed" in w.alerts[0]


def test_an_out_of_scope_repo_is_handed_back(world: WorldFactory) -> None:
    w = world()
    result = run_gate(job("elsewhere"), w.ctx, attempt=0, delivery_id="d")
    assert result.kind == "handed-back"
    [(name, kwargs)] = w.sender.sent
    assert name == "orchestrator.test_gate_handback"
    assert kwargs == {
        "task_id": 5,
        "repo": "elsewhere",
        "reason": "repo 'elsewhere' is not in testgate's scope",
    }


def test_the_kill_switch_hands_every_job_back(world: WorldFactory) -> None:
    w = world(enabled=False)
    assert run_gate(job("passing"), w.ctx, attempt=0, delivery_id="d").kind == "handed-back"
    assert "disabled" in w.sender.sent[0][1]["reason"]


def test_an_undeliverable_advance_raises_so_the_message_is_kept(world: WorldFactory) -> None:
    w = world()
    make_origin(w.origins, "failing", FAILING)
    w.sender.broken = True
    with pytest.raises(EventDeliveryError):
        run_gate(job("failing"), w.ctx, attempt=0, delivery_id="d")
    w.sender.broken = False
    # Not recorded as done: the kept message, delivered again, still advances.
    assert run_gate(job("failing"), w.ctx, attempt=0, delivery_id="d").kind == "advanced"


class BrokenState(MemoryState):
    def acquire_run(self, key: str, owner: str, ttl_s: float) -> str | None:
        raise StateUnavailable("redis down")


def test_unavailable_shared_state_defers_the_job(world: WorldFactory) -> None:
    w = world()
    make_origin(w.origins, "passing", PASSING)
    ctx = GateContext(
        settings=w.ctx.settings,
        contracts=w.ctx.contracts,
        state=BrokenState(),
        events=w.sender,
        alert=w.alerts.append,
    )
    assert run_gate(job("passing"), ctx, attempt=0, delivery_id="d").kind == "deferred"
    assert w.sender.sent == []


class ExplodingContracts(Contracts):
    def for_repo(self, repo: str) -> TestContract | None:
        raise RuntimeError("a bug in the gate")


def test_a_gate_that_crashes_is_retried_then_fails_closed_with_one_advance(
    world: WorldFactory,
) -> None:
    w = world()
    broken = ExplodingContracts(by_repo={})
    ctx = GateContext(
        settings=w.ctx.settings,
        contracts=broken,
        state=w.state,
        events=w.sender,
        alert=w.alerts.append,
    )
    app.conf.task_always_eager = True
    configure(ctx)
    try:
        outcome = run_test_gate.apply(kwargs=job("passing"))
    finally:
        configure(None)
        app.conf.task_always_eager = False
    summary = outcome.get(propagate=False)
    assert isinstance(summary, dict) and summary["kind"] == "advanced"
    [(name, kwargs)] = w.sender.sent
    assert name == "orchestrator.advance_stage"
    assert (kwargs["result"], kwargs["outcome"], kwargs["report_pushed"]) == (
        "FAIL",
        "tool-error",
        False,
    )
    assert len(w.alerts) == 1 and "a bug in the gate" in w.alerts[0]


def test_with_a_webhook_the_advance_arrives_as_a_post_even_if_the_first_one_fails(
    world: WorldFactory,
) -> None:
    w = world()
    make_origin(w.origins, "failing", FAILING)
    with http_server(rec=Recorder(fail_first=1)) as (base, rec):
        ctx = GateContext(
            settings=w.ctx.settings,
            contracts=w.ctx.contracts,
            state=w.state,
            events=WebhookSender(f"{base}/events", secret="s"),
            alert=w.alerts.append,
        )
        result = run_gate(job("failing"), ctx, attempt=0, delivery_id="d")
    assert result.kind == "advanced"
    assert len(rec.posts) == 2  # the first answered 503, the retry was accepted
    path, headers, payload = rec.posts[-1]
    assert path == "/events"
    assert payload["event"] == "orchestrator.advance_stage"
    assert payload["kwargs"]["result"] == "FAIL"
    assert payload["kwargs"]["finished_agent"] == "tester"
    assert headers["X-Testgate-Signature"].startswith("sha256=")


def test_a_fork_bomb_ends_as_a_fail_whose_report_names_the_process_limit(
    world: WorldFactory,
) -> None:
    from worker.containment.cgroup import open_job_cgroup

    probe = open_job_cgroup("probe-runner", 10)
    if probe is None:
        pytest.skip("no writable pids cgroup here (not root, or no delegated cgroup v2)")
    probe.remove()
    w = world({"bomb": {"smoke_enabled": False}}, suite_max_pids=60)
    bomb = (
        "import os, time\n\n\n"
        "def test_bomb():\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(600)\n"
        "            os._exit(0)\n"
    )
    origin = make_origin(w.origins, "bomb", {"tests/test_bomb.py": bomb})
    result = run_gate(job("bomb"), w.ctx, attempt=0, delivery_id="d1")
    assert result.kind == "advanced"
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "code-fail")
    report = show_file(origin, "feature/x", "docs/work-items/WI-5/13-test-report.md")
    assert "## Resource limits reached" in report and "limit of 60 processes" in report
    assert not list((w.ctx.settings.workdir_path / "scratch").iterdir())
