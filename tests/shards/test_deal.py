"""How many shards, and how a suite is dealt into batches (pure)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from worker.shards.deal import MAX_AUTO_SHARDS, deal_batches, plan_shards, shard_count

IDS = [f"tests/test_{i // 10:02d}.py::test_{i}" for i in range(400)]


@example(ids=["0", "00"], shards=2, seconds=[0.0, 0.0])  # a 0 s test once emptied a shard
@given(
    ids=st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=60),
    shards=st.integers(min_value=1, max_value=12),
    seconds=st.lists(st.floats(0, 100), min_size=60, max_size=60),
)
def test_a_timed_plan_holds_every_test_once_and_no_list_is_empty(
    ids: list[str], shards: int, seconds: list[float]
) -> None:
    plan = plan_shards(ids, dict(zip(ids, seconds, strict=False)), shards)
    assert sorted(t for shard in plan for t in shard) == sorted(ids)
    assert all(plan) and len(plan) == min(shards, len(ids)) if ids else plan == []


def test_known_durations_are_balanced_longest_first() -> None:
    durations = {IDS[0]: 9.0, IDS[1]: 5.0, IDS[2]: 4.0, IDS[3]: 3.0, IDS[4]: 1.0}
    plan = plan_shards(IDS[:5], durations, 2)
    loads = sorted(sum(durations[t] for t in shard) for shard in plan)
    assert loads == [10.0, 12.0]  # {9, 3} and {5, 4, 1}


def test_equally_timed_tests_go_to_shards_of_consecutive_tests() -> None:
    ids = [f"tests/test_f{f:02}.py::test_{i}" for f in range(20) for i in range(20)]
    durations = {t: 0.05 + (hash(t) % 7) * 1e-4 for t in ids}  # timing noise
    plan = plan_shards(ids, durations, 8)
    loads = [sum(durations[t] for t in shard) for shard in plan]
    assert max(loads) <= sum(loads) / 8 + max(durations.values())  # within one test
    assert [t for shard in plan for t in shard] == ids  # each shard a run of the order
    assert max(len({t.split("::")[0] for t in shard}) for shard in plan) <= 4  # not 20


def test_auto_asks_for_about_thirty_seconds_a_shard_within_bounds() -> None:
    ten = IDS[:10]
    assert shard_count("auto", ten, {}) == 1  # ten unknown tests: ~10 s
    assert shard_count("auto", ten, dict.fromkeys(ten, 9.0)) == 3  # 90 s
    assert shard_count("auto", ten, dict.fromkeys(ten, 1000.0)) == MAX_AUTO_SHARDS
    assert shard_count(4, ten[:2], {}) == 2
    assert shard_count(4, [], {}) == 1


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
