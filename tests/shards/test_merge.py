"""A shard's batches folded into its result, the results merged into one suite run,
and what the merged run's records say against a PASS (pure)."""

from __future__ import annotations

import pytest

from worker.evidence import SessionRecord
from worker.shards.merge import merge, shard_result
from worker.shards.protocol import Batch, Deal, ShardResult
from worker.suite.probe import TestOutcome
from worker.suite.run import SuiteRun
from worker.suite.tally import Tally


def suite(
    exit_code: int | None, outcomes: dict[str, str], *, record: bool = True, tail: str = ""
) -> SuiteRun:
    """One batch's run, whose probe saw what `outcomes` says."""
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


def deal(*batches: list[str], shards: int = 2) -> Deal:
    return Deal(
        commit="c" * 40, deal_id="d", shards=shards, batches=tuple(tuple(b) for b in batches)
    )


def shard(index: int, *runs: tuple[list[str], SuiteRun]) -> ShardResult:
    numbered = [(Batch(number=n, test_ids=tuple(ids)), s) for n, (ids, s) in enumerate(runs)]
    return shard_result(index, numbered, attempts=1)


def objection(dealt: Deal, results: list[ShardResult]) -> str | None:
    """What the merged run holds against its exit status, as the verdict reads it."""
    merged = merge(dealt, results)
    assert merged.suite is not None
    return merged.objection or merged.suite.evidence_objection()


def test_passing_shards_that_report_every_dealt_test_merge_into_a_pass() -> None:
    dealt = deal(["a", "b"], ["c"])
    results = [
        shard(1, (["c"], suite(0, {"c": "skipped"}))),
        shard(0, (["a", "b"], suite(0, {"a": "passed", "b": "passed"}))),
    ]
    merged = merge(dealt, results)
    assert merged.suite is not None and merged.suite.exit_code == 0
    assert merged.suite.tally == Tally(3, (), 1) and merged.objection is None
    assert merged.suite.evidence_objection() is None
    assert merged.durations == {"a": 0.5, "b": 0.5, "c": 0.5}
    assert "2 shards pulled 2 batches" in merged.suite.output_tail


def test_a_failing_batch_fails_the_merge_with_its_exit_code_tail_and_tests() -> None:
    dealt = deal(["a"], ["b"], ["c"], shards=1)
    result = shard(
        0,
        (["a"], suite(0, {"a": "passed"})),
        (["b"], suite(1, {"b": "failed"}, tail="1 failed")),
        (["c"], suite(None, {}, record=False)),  # started, then killed
    )
    assert (result.exit_code, result.counts) == (1, {"passed": 1, "failed": 1})
    merged = merge(dealt, [result])
    assert merged.suite is not None and merged.suite.exit_code == 1
    assert merged.suite.tally.failing == ("b", "c")  # the failing one, then the missing
    assert "[shard 1] [batch 2] 1 failed" in merged.suite.output_tail


def test_a_batch_without_evidence_objects_though_the_shard_exited_0() -> None:
    dealt = deal(["a"], ["b"], shards=1)
    result = shard(
        0, (["a"], suite(0, {"a": "passed"})), (["b"], suite(0, {"b": "passed"}, record=False))
    )
    assert result.exit_code == 0 and result.evidence.startswith("batch 2: the gate's probe")
    found = objection(dealt, [result])
    assert found is not None and found.startswith("shard 1, batch 2: the gate's probe")


def test_a_dealt_test_no_shard_reported_objects_and_is_named() -> None:
    dealt = deal(["a", "b"], ["c"])
    results = [shard(0, (["a", "b"], suite(0, {"a": "passed"}))), shard(1)]
    found = objection(dealt, results)
    assert found == "2 dealt test(s) were reported by no shard: b, c"


@pytest.mark.parametrize(
    ("outcomes", "why"),
    [
        ({"a": "skipped", "b": "skipped"}, "no test passed"),
        ({"a": "passed", "b": "failed"}, "counted 1 failed"),
    ],
)
def test_the_merged_counts_are_judged_as_one_session(outcomes: dict[str, str], why: str) -> None:
    # Each batch alone is fine (a batch needs no pass of its own; a forged exit 0
    # hides the failure from the exit code): the merged record still objects.
    dealt = deal(["a"], ["b"])
    results = [shard(i, ([t], suite(0, {t: o}))) for i, (t, o) in enumerate(outcomes.items())]
    results[1] = results[1].model_copy(update={"evidence": ""})
    found = objection(dealt, results)
    assert found is not None and why in found


def test_shards_that_drew_no_batch_prove_nothing() -> None:
    empty = [shard(0), shard(1)]
    assert (empty[0].ran, empty[0].exit_code, empty[0].counts) == (True, 0, {})
    found = objection(deal([], shards=2), empty)
    assert found is not None and "no test passed" in found


def test_a_shard_that_did_not_run_leaves_the_merge_without_a_suite() -> None:
    hung = ShardResult(index=1, ran=False, problem="timed out after 8s and was killed")
    merged = merge(deal(["a"], ["b"]), [shard(0, (["a"], suite(0, {"a": "passed"}))), hung])
    assert merged.suite is None
    assert merged.not_run == "shard 2/2: timed out after 8s and was killed"
    assert merge(deal(["a"]), []).not_run == "shard 1/2: no result; shard 2/2: no result"


def test_what_crosses_the_broker_round_trips_and_is_validated_strictly() -> None:
    result = shard(3, (["a"], suite(1, {"a": "failed"})))
    assert ShardResult.model_validate_json(result.model_dump_json()) == result
    dealt = deal(["a", "b"], ["c"])
    assert Deal.model_validate_json(dealt.model_dump_json()) == dealt
    forged = result.model_dump_json().replace('"exit_code":1', '"exit_code":"0"')
    with pytest.raises(ValueError, match="exit_code"):
        ShardResult.model_validate_json(forged)
