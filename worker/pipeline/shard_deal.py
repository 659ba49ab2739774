"""Dealing a suite to shards as they ask for work (pure).

Instead of a plan fixed before any shard starts, the suite is cut into batches of
consecutive tests that shards pull from a per-job queue until it is empty
(`worker.shard_queue`): a shard that draws slow tests simply pulls fewer batches, so a
first run with no recorded durations is balanced too. Batches shrink as the suite is
dealt (guided self-scheduling): the big ones first, few pytest starts; the small ones
last, so the shards finish close together. A suite whose every test was timed before
is dealt as the duration-balanced plan instead, one batch a shard (one pytest start
each: 8 shards on 2 cores paid 0.9 s more for 3 starts a shard), still pulled, so a
shard that starts late or dies leaves its batch to the others. Tests that failed on
the branch's last run form the first batch, so a FAIL shows early.

A shard runs each batch it pulls as one pytest run; `shard_result` folds those runs
into the one ShardResult the merge (`shard_plan.merge_shards`) judges exactly as a
statically planned shard's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from worker.pipeline.shard_plan import UNKNOWN_TEST_S, ShardResult, TestCase, plan_shards
from worker.suite.run import SuiteRun

# Each shard's next batch holds at most 1/(GUIDED_FACTOR x shards) of what is left...
GUIDED_FACTOR = 1.5
# ...and at least 1/(MIN_BATCH_DIVISOR x shards) of the suite: every batch is a pytest
# start (0.1 s warm, 0.3-0.9 s cold under containment), so about 3 batches a shard.
# Simulated on long-tailed suites of 48 tests, 2 shards: the best of the pairs tried
# at 0.1, 0.3 and 0.9 s a start (docs/benchmarks.md).
MIN_BATCH_DIVISOR = 4


@dataclass(frozen=True)
class Batch:
    """Tests one shard runs in one pytest process."""

    number: int  # its place in the deal, from 0
    test_ids: tuple[str, ...]


def deal_batches(
    test_ids: Sequence[str],
    durations: Mapping[str, float],
    shards: int,
    first: Sequence[str] = (),
) -> list[list[str]]:
    """Every id exactly once, cut into non-empty batches in dealing order.

    `first` (tests that failed last time; ids not collected now are ignored) is the
    first batch. With no such batch and every test timed, the rest is the plan
    `plan_shards` balances by those times, a batch a shard. Otherwise the rest are
    runs of consecutive tests in collection order, each weighing about what is left /
    (GUIDED_FACTOR x shards), never less than the suite / (MIN_BATCH_DIVISOR x shards).
    A test never timed weighs the mean of those timed."""
    collected = set(test_ids)
    head = list(dict.fromkeys(t for t in first if t in collected))
    leading = set(head)
    rest = [t for t in test_ids if t not in leading]
    batches = [head] if head else []
    if not rest:
        return batches
    count = max(1, shards)
    if not head and all(t in durations for t in rest):
        return plan_shards(rest, durations, count)
    known = [max(durations[t], 0.0) for t in rest if t in durations]
    guess = sum(known) / len(known) if known else UNKNOWN_TEST_S
    # A test of 0 s still costs its share of a pytest run: never weigh nothing.
    weights = [max(durations.get(t, guess), 1e-3) for t in rest]
    left = sum(weights)
    floor = left / (MIN_BATCH_DIVISOR * count)
    batch: list[str] = []
    load = 0.0
    target = max(left / (GUIDED_FACTOR * count), floor)
    for test, weight in zip(rest, weights, strict=True):
        batch.append(test)
        load += weight
        if load >= target * (1 - 1e-9):
            batches.append(batch)
            left -= load
            batch, load = [], 0.0
            target = max(left / (GUIDED_FACTOR * count), floor)
    if batch:
        batches.append(batch)
    return batches


def shard_result(
    index: int,
    runs: Sequence[tuple[Batch, SuiteRun]],
    *,
    attempts: int,
) -> ShardResult:
    """One shard's result from the batches it ran, each of which ran (an exit code).

    As for a shard of one run: the exit code is the first non-zero one (0 when every
    batch exited 0); the evidence objection is the first objection of a batch that
    exited 0 (each batch is judged as a whole run would be, a passing test not needed
    in each); passed counts add up. A shard that drew no batch ran nothing and
    proves nothing: the merge still needs one passing test over all shards."""
    cases: dict[str, TestCase] = {}
    exit_code: int | None = 0
    evidence = ""
    passed = 0
    tails: list[str] = []
    duration = 0.0
    for batch, suite in runs:
        cases.update({o.test_id: TestCase(o.outcome, o.seconds) for o in suite.outcomes})
        duration += suite.duration_s
        passed += suite.passed_tests
        if suite.exit_code != 0:
            tails.append(f"[batch {batch.number + 1}] {suite.output_tail}")
            if exit_code == 0:
                exit_code = suite.exit_code  # None: it started and was killed
        elif not evidence:
            objection = suite.evidence_objection(require_a_pass=False)
            if objection:
                evidence = f"batch {batch.number + 1}: {objection}"
    if not tails and runs:
        tails.append(runs[-1][1].output_tail)
    return ShardResult(
        index,
        True,
        exit_code,
        duration,
        cases=cases,
        output_tail="\n".join(tails),
        attempts=attempts,
        evidence=evidence,
        passed=passed,
    )


def failures_in(suite: SuiteRun) -> int:
    """Tests that failed or errored in one run, as the probe saw them."""
    return sum(1 for o in suite.outcomes if o.outcome in ("failed", "error"))
