"""Dealing a suite in batches (pure), the shard queue on Redis (fakeredis, real Lua)
and in memory, folding a shard's batch runs into one result, and which tests run
first."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.evidence import SessionRecord
from worker.pipeline.failed_first import MAX_ID_CHARS, MAX_KEPT, still_failing
from worker.pipeline.shard_deal import Batch, deal_batches, shard_result
from worker.pipeline.shard_plan import merge_shards
from worker.shard_queue import MemoryShardQueue, RedisShardQueue, ShardQueue
from worker.suite.probe import TestOutcome
from worker.suite.run import SuiteRun
from worker.suite.tally import Tally

IDS = [f"tests/test_{i // 10:02d}.py::test_{i}" for i in range(400)]


@given(
    ids=st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=80),
    shards=st.integers(1, 8),
    timed=st.dictionaries(st.integers(0, 79), st.floats(0, 50), max_size=80),
    first=st.lists(st.text(min_size=1, max_size=6), max_size=5),
)
def test_every_test_is_dealt_exactly_once_in_non_empty_batches(
    ids: list[str], shards: int, timed: dict[int, float], first: list[str]
) -> None:
    durations = {ids[i]: s for i, s in timed.items() if i < len(ids)}
    batches = deal_batches(ids, durations, shards, first)
    flat = [t for b in batches for t in b]
    assert sorted(flat) == sorted(ids) and all(batches)


def test_a_first_run_is_dealt_in_shrinking_batches_of_consecutive_tests() -> None:
    batches = deal_batches(IDS, {}, 2)
    sizes = [len(b) for b in batches]
    assert sizes[0] == 134  # a third of what is left: 2 shards take 1/(1.5 x 2) each
    assert sizes == sorted(sizes, reverse=True)
    assert min(sizes[:-1]) >= 50  # never below 1/(4 x 2) of the suite, but for the rest
    assert 4 <= len(batches) <= 8, "about 3 pytest starts a shard"
    assert [t for b in batches for t in b] == IDS  # consecutive, in collection order


def test_recorded_durations_size_the_batches_by_time() -> None:
    durations = dict.fromkeys(IDS[1:-1], 0.01) | {IDS[0]: 100.0}  # the last never timed
    batches = deal_batches(IDS, durations, 2)
    assert batches[0] == [IDS[0]]  # the long test alone is already a third of the suite


def test_a_suite_timed_whole_is_dealt_as_the_balanced_plan_one_batch_a_shard() -> None:
    durations = {t: 0.5 if i % 7 == 0 else 0.01 for i, t in enumerate(IDS)}
    batches = deal_batches(IDS, durations, 8)
    assert len(batches) == 8 and sorted(t for b in batches for t in b) == sorted(IDS)
    loads = [sum(durations[t] for t in b) for b in batches]
    assert max(loads) <= 1.05 * sum(loads) / 8
    # A failing test of the last run first: then the first run's dealing, shrinking.
    failing_first = deal_batches(IDS, durations, 8, first=[IDS[5]])
    assert failing_first[0] == [IDS[5]] and len(failing_first) > 9


def test_tests_that_failed_last_time_are_the_first_batch_in_their_order() -> None:
    batches = deal_batches(IDS, {}, 2, first=[IDS[399], "gone::test", IDS[7]])
    assert batches[0] == [IDS[399], IDS[7]]
    assert IDS[399] not in batches[1] and len([t for b in batches for t in b]) == 400


@pytest.fixture(params=["redis", "memory"])
def queue(request: pytest.FixtureRequest) -> Iterator[ShardQueue]:
    if request.param == "redis":
        yield RedisShardQueue(fakeredis.FakeRedis(), prefix="t:")
    else:
        yield MemoryShardQueue()


def test_shards_pull_batches_in_dealing_order_until_none_is_left(queue: ShardQueue) -> None:
    queue.deal("d", [["a", "b"], ["c"], ["d"]], ttl_s=60)
    assert queue.claim("d", 0) == (0, ("a", "b"))
    assert queue.claim("d", 1) == (1, ("c",))
    assert queue.claim("d", 1) == (2, ("d",))
    assert queue.claim("d", 0) is None and queue.claim("d", 1) is None
    assert queue.claim("other", 0) is None


def test_a_shard_that_starts_again_has_its_earlier_batches_dealt_again(
    queue: ShardQueue,
) -> None:
    queue.deal("d", [["a"], ["b"], ["c"], ["d"]], ttl_s=60)
    assert queue.claim("d", 0) == (0, ("a",))
    assert queue.claim("d", 1) == (1, ("b",))
    assert queue.claim("d", 0) == (2, ("c",))
    # Shard 0's process died: whatever it ran is lost with it; shard 1's is not.
    assert queue.take_back("d", 0) == 2
    pulled = [queue.claim("d", 1), queue.claim("d", 0), queue.claim("d", 0)]
    assert pulled == [(0, ("a",)), (2, ("c",)), (3, ("d",))]
    assert queue.claim("d", 1) is None
    assert queue.take_back("d", 1) == 2  # b and a, both last pulled by shard 1
    assert queue.take_back("d", 1) == 0


def test_failures_add_up_over_shards_and_a_forgotten_deal_is_empty(queue: ShardQueue) -> None:
    queue.deal("d", [["a"]], ttl_s=60)
    assert queue.add_failures("d", 0) == 0
    assert queue.add_failures("d", 2) == 2 and queue.add_failures("d", 1) == 3
    queue.forget("d")
    assert queue.claim("d", 0) is None


def suite(
    exit_code: int | None, outcomes: dict[str, str], *, record: bool = True, tail: str = ""
) -> SuiteRun:
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    failing = tuple(t for t, o in outcomes.items() if o == "failed")
    return SuiteRun(
        command=("pytest",),
        exit_code=exit_code,
        timed_out=False,
        spawn_error=None,
        duration_s=1.0,
        output_tail=tail,
        output_bytes=len(tail),
        tally=Tally(len(outcomes), failing, 0),
        outcomes=tuple(TestOutcome(t, o, seconds=0.5) for t, o in outcomes.items()),
        started=True,
        session=(SessionRecord(exit_code or 0, len(outcomes), counts),) if record else (),
    )


def test_a_shard_of_passing_batches_passes_with_every_test_counted() -> None:
    runs = [
        (Batch(0, ("a", "b")), suite(0, {"a": "passed", "b": "passed"})),
        (Batch(3, ("c",)), suite(0, {"c": "skipped"})),
    ]
    result = shard_result(1, runs, attempts=1)
    assert (result.ran, result.exit_code, result.evidence, result.passed) == (True, 0, "", 2)
    assert set(result.cases) == {"a", "b", "c"} and result.duration_s == 2.0
    merged = merge_shards([["a", "b"], ["c"]], [result, shard_result(0, [], attempts=1)], 2)
    assert merged.verdict is not None and merged.verdict.result == "PASS"


def test_one_batch_without_evidence_makes_the_shard_object_and_the_merge_fail() -> None:
    runs = [
        (Batch(0, ("a",)), suite(0, {"a": "passed"})),
        (Batch(1, ("b",)), suite(0, {"b": "passed"}, record=False)),
    ]
    result = shard_result(0, runs, attempts=1)
    assert result.exit_code == 0 and result.evidence.startswith("batch 2: the gate's probe")
    merged = merge_shards([["a"], ["b"]], [result], 1)
    assert merged.verdict is not None
    assert (merged.verdict.result, merged.exit_code) == ("FAIL", 1)


def test_a_failing_batch_gives_the_shard_its_exit_code_and_tail() -> None:
    runs = [
        (Batch(0, ("a",)), suite(0, {"a": "passed"})),
        (Batch(1, ("b",)), suite(1, {"b": "failed"}, tail="1 failed")),
        (Batch(2, ("c",)), suite(None, {}, record=False)),  # started, then killed
    ]
    result = shard_result(0, runs, attempts=2)
    assert (result.exit_code, result.passed, result.attempts) == (1, 1, 2)
    assert result.output_tail.startswith("[batch 2] 1 failed")
    merged = merge_shards([["a", "b", "c"]], [result], 1)
    assert merged.verdict is not None and merged.verdict.result == "FAIL"
    assert merged.failing == ("b",) and merged.missing == ("c",)


def test_a_shard_that_drew_no_batch_proves_nothing_on_its_own() -> None:
    empty = shard_result(0, [], attempts=1)
    assert (empty.ran, empty.exit_code, empty.passed, empty.cases) == (True, 0, 0, {})
    merged = merge_shards([[]], [empty, shard_result(1, [], attempts=1)], 2)
    assert merged.verdict is not None and merged.verdict.result == "FAIL"


def test_the_failing_list_keeps_what_did_not_run_and_drops_what_passed() -> None:
    previous = ["a", "b", "c"]
    outcomes = {"a": "passed", "b": "failed", "d": "error", "e": "passed"}
    assert still_failing(previous, outcomes) == ["b", "c", "d"]
    assert still_failing([], {"x": "skipped"}) == []


def test_a_flood_of_failing_ids_is_kept_bounded() -> None:
    flood = {f"tests/test_a.py::test_{i:05d}": "failed" for i in range(5000)}
    flood["tests/test_a.py::test_" + "x" * 2000] = "failed"
    kept = still_failing([], flood)
    assert len(kept) == MAX_KEPT and all(len(t) <= MAX_ID_CHARS for t in kept)
    assert kept[0] == "tests/test_a.py::test_00000"
