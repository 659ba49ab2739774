"""A sharded job without a broker: the dispatcher runs each shard and the merge in this
process, as the chord would on the fleet (real git and pytest, in-memory state)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from testkit.repofactory import branch_tip, make_origin, show_file
from tests.gateworld import World, WorldFactory, job
from tests.pipeline.inline_sharding import module_of_tests, sharded_world
from worker.job import Job
from worker.pipeline.runner import run_gate
from worker.pipeline.sharded import finish_sharded
from worker.shards.protocol import Deal
from worker.shards.queue import ShardQueue

REPORT = "docs/work-items/WI-5/13-test-report.md"


def test_a_failing_shard_merges_into_one_fail_report_and_one_advance(
    world: WorldFactory,
) -> None:
    w, sharding = sharded_world(world, 3)
    origin = make_origin(
        w.origins,
        "split",
        {
            "tests/test_a.py": module_of_tests(["test_a1", "test_a2", "test_a3"]),
            "tests/test_b.py": module_of_tests(["test_b1", "test_b2"], failing="test_b2"),
        },
    )
    result = run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent")
    assert result.kind == "sharded"
    [deal] = sharding.deals
    assert deal.shards == 3 and sorted(t for b in deal.batches for t in b) == sorted(
        [f"tests/test_a.py::test_a{i}" for i in (1, 2, 3)]
        + [f"tests/test_b.py::test_b{i}" for i in (1, 2)]
    )
    [merged] = sharding.merged
    assert merged.kind == "advanced"
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "code-fail")
    report = show_file(origin, "feature/x", REPORT)
    assert "tests_total: 5" in report and "tests/test_b.py::test_b2" in report
    assert set(w.state.test_durations("split")) == {t for b in deal.batches for t in b}


def test_a_forged_exit_0_of_a_shard_is_judged_by_its_records(world: WorldFactory) -> None:
    w, _ = sharded_world(world, 2)
    origin = make_origin(
        w.origins,
        "split",
        {
            # The suite's own exit status, forced to 0 over a failing test.
            "conftest.py": (
                "def pytest_sessionfinish(session, exitstatus):\n    session.exitstatus = 0\n"
            ),
            "tests/test_a.py": module_of_tests([f"test_{i}" for i in range(10)], "test_7"),
        },
    )
    assert run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent").kind == "sharded"
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "code-fail")
    report = show_file(origin, "feature/x", REPORT)
    assert "exit code 0" in report and "the gate's probe counted 1 failed" in report


def test_a_redelivered_merge_does_not_advance_twice(world: WorldFactory) -> None:
    w, sharding = sharded_world(world, 2)
    make_origin(w.origins, "split", {"tests/test_a.py": module_of_tests(["test_1", "test_2"])})
    assert run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent").kind == "sharded"
    [deal] = sharding.deals
    # The same merge message again (the id InlineSharding gave it): answered already.
    again = finish_sharded(Job.model_validate(job("split")), deal, [], w.ctx, delivery_id="merge-0")
    assert again.kind == "already-done"
    # The parent message redelivered after it sent its shards: no second chord.
    parent_again = run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent")
    assert parent_again.kind == "already-done" and len(sharding.deals) == 1
    # The chord's error path for the same merge cannot answer a second time either.
    failed = finish_sharded(
        Job.model_validate(job("split")),
        deal,
        [],
        w.ctx,
        delivery_id="merge-0",
        failure="the chord failed",
    )
    assert failed.kind == "already-done"
    assert len(w.sender.sent) == 1 and w.sender.sent[0][1]["result"] == "PASS"


def test_a_failed_chord_ends_in_one_fail_advance(world: WorldFactory) -> None:
    w, _ = sharded_world(world, 2)
    make_origin(w.origins, "split", {"tests/test_a.py": module_of_tests(["test_1", "test_2"])})
    commit = branch_tip(w.origins / "split.git", "feature/x")
    deal = Deal(
        commit=commit,
        deal_id="d",
        shards=2,
        batches=(("tests/test_a.py::test_1",), ("tests/test_a.py::test_2",)),
    )
    failed = finish_sharded(
        Job.model_validate(job("split")),
        deal,
        [],
        w.ctx,
        delivery_id="merge",
        failure="the chord failed: a shard raised",
    )
    assert failed.kind == "advanced"
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "tool-error")
    assert "the chord failed" in show_file(w.origins / "split.git", "feature/x", REPORT)


def test_auto_with_few_short_tests_runs_the_suite_whole(world: WorldFactory) -> None:
    w, sharding = sharded_world(world, "auto")
    make_origin(w.origins, "split", {"tests/test_a.py": module_of_tests(["test_1", "test_2"])})
    result = run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent")
    assert result.kind == "advanced" and sharding.deals == []
    # The whole run still times each test, so the next "auto" sizes from real times.
    assert set(w.state.test_durations("split")) == {
        "tests/test_a.py::test_1",
        "tests/test_a.py::test_2",
    }


def test_a_repo_that_never_shards_keeps_no_durations(world: WorldFactory) -> None:
    w, _ = sharded_world(world, 1)
    make_origin(w.origins, "split", {"tests/test_a.py": module_of_tests(["test_1"])})
    assert run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent").kind == "advanced"
    assert w.state.test_durations("split") == {}


def test_without_a_dispatcher_a_sharded_contract_runs_whole(world: WorldFactory) -> None:
    w, _ = sharded_world(world, 4)
    w.ctx = replace(w.ctx, shards=None)  # the embedded mode
    make_origin(w.origins, "split", {"tests/test_a.py": module_of_tests(["test_1", "test_2"])})
    assert run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent").kind == "advanced"


def test_a_dealt_job_runs_every_test_once_in_batches_and_merges_into_one_pass(
    world: WorldFactory,
) -> None:
    w, sharding = sharded_world(world, 2)
    names = [f"test_{i}" for i in range(40)]
    origin = make_origin(
        w.origins,
        "split",
        {
            "tests/test_a.py": module_of_tests(names[:20]),
            "tests/test_b.py": module_of_tests(names[20:]),
        },
    )
    assert run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent").kind == "sharded"
    [deal] = sharding.deals
    assert deal.shards == 2 and deal.deal_id and len(deal.batches) > 2
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"]) == ("PASS", "code-pass")
    report = show_file(origin, "feature/x", REPORT)
    assert "tests_total: 40" in report and "2 shards pulled" in report


def test_a_dead_shards_batches_are_dealt_again_when_it_starts_again(world: WorldFactory) -> None:
    w, sharding = sharded_world(world, 2)
    make_origin(
        w.origins, "split", {"tests/test_a.py": module_of_tests([f"test_{i}" for i in range(20)])}
    )
    lost: list[tuple[str, ...]] = []

    def died_after_pulling(deal: Deal, queue: ShardQueue) -> None:
        claimed = queue.claim(deal.deal_id, 0)  # shard 0 pulled, then its process died
        assert claimed is not None
        lost.append(claimed.test_ids)

    sharding.before = died_after_pulling
    sharding.order = [1, 0]  # shard 1 pulls all it can, then shard 0 comes back
    assert run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent").kind == "sharded"
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"]) == ("PASS", "code-pass")
    assert set(w.state.test_durations("split")) >= set(lost[0])


def test_a_dead_shard_that_never_comes_back_fails_the_job_closed(world: WorldFactory) -> None:
    w, sharding = sharded_world(world, 2)
    make_origin(
        w.origins, "split", {"tests/test_a.py": module_of_tests([f"test_{i}" for i in range(20)])}
    )

    def died_for_good(deal: Deal, queue: ShardQueue) -> None:
        queue.claim(deal.deal_id, 0)

    sharding.before = died_for_good
    sharding.order = [1]  # shard 0's batch is held by a process that is gone for good
    assert run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent").kind == "sharded"
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "tool-error")


def test_a_failing_batch_fails_the_dealt_job_and_runs_first_next_time(world: WorldFactory) -> None:
    w, sharding = sharded_world(world, 2)
    names = [f"test_{i:02d}" for i in range(30)]
    origin = make_origin(
        w.origins, "split", {"tests/test_a.py": module_of_tests(names, failing="test_29")}
    )
    run_gate(job("split"), w.ctx, attempt=0, delivery_id="parent")
    assert w.sender.sent[-1][1]["result"] == "FAIL"
    assert w.state.failing_tests("split", "feature/x") == ["tests/test_a.py::test_29"]
    run_gate(job("split", task_id=6), w.ctx, attempt=0, delivery_id="parent-2")
    second = sharding.deals[-1]
    assert second.batches[0] == ("tests/test_a.py::test_29",)
    assert second.ran_first == ("tests/test_a.py::test_29",)
    report = show_file(origin, "feature/x", REPORT)
    assert "## Order" in report and "`tests/test_a.py::test_29`" in report


def whole_world(world: WorldFactory, **contract: Any) -> World:
    return world({"whole": {"smoke_enabled": False, **contract}})


def test_the_test_that_failed_last_time_runs_first_and_stops_the_run_early(
    world: WorldFactory,
) -> None:
    w = whole_world(world, stop_after_failures=1)
    names = [f"test_{i:02d}" for i in range(20)]
    origin = make_origin(
        w.origins, "whole", {"tests/test_a.py": module_of_tests(names, failing="test_19")}
    )
    run_gate(job("whole"), w.ctx, attempt=0, delivery_id="first")
    report = show_file(origin, "feature/x", REPORT)
    assert "tests_total: 20" in report and "## Order" not in report  # nothing known yet
    run_gate(job("whole", task_id=6), w.ctx, attempt=0, delivery_id="second")
    assert [kw["result"] for _, kw in w.sender.sent] == ["FAIL", "FAIL"]
    report = show_file(origin, "feature/x", REPORT)
    assert "tests_total: 1" in report and "tests_failing: 1" in report
    assert "## Order" in report and "`tests/test_a.py::test_19`" in report
    assert w.state.failing_tests("whole", "feature/x") == ["tests/test_a.py::test_19"]


def test_stop_after_failures_leaves_a_passing_suite_a_pass(world: WorldFactory) -> None:
    w = whole_world(world, stop_after_failures=1)
    w.state.record_failing("whole", "feature/x", ["tests/test_a.py::test_02"])
    origin = make_origin(
        w.origins, "whole", {"tests/test_a.py": module_of_tests(["test_01", "test_02"])}
    )
    run_gate(job("whole"), w.ctx, attempt=0, delivery_id="first")
    [(_, kwargs)] = w.sender.sent
    assert (kwargs["result"], kwargs["outcome"]) == ("PASS", "code-pass")
    assert "tests_total: 2" in show_file(origin, "feature/x", REPORT)
    assert w.state.failing_tests("whole", "feature/x") == []  # it passed: off the list
