"""Dealing a suite to shards as they ask for work (pure).

The suite is cut into batches of consecutive tests that shards pull from the job's
queue until it is empty (`worker.shards.queue`): a shard that draws slow tests simply
pulls fewer batches, so a first run with no recorded durations is balanced too. Batches
shrink as the suite is dealt (guided self-scheduling): the big ones first, few pytest
starts; the small ones last, so the shards finish close together. A suite whose every
test was timed before is dealt as the duration-balanced plan instead, one batch a
shard (one pytest start each: 8 shards on 2 cores paid 0.9 s more for 3 starts a
shard), still pulled, so a shard that starts late or dies leaves its batch to the
others. Tests that failed on the branch's last run form the first batch, so a FAIL
shows early.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence

MAX_AUTO_SHARDS = 8
AUTO_SHARD_TARGET_S = 30.0  # "auto" aims at shards of about this many seconds each
UNKNOWN_TEST_S = 1.0  # what "auto" assumes for a test it has never timed
# How much less balanced than longest-first a plan of consecutive tests may be: worth
# it for a shard that collects 2 files instead of 20.
CONTIGUOUS_SLACK = 0.05
# Each shard's next batch holds at most 1/(GUIDED_FACTOR x shards) of what is left...
GUIDED_FACTOR = 1.5
# ...and at least 1/(MIN_BATCH_DIVISOR x shards) of the suite: every batch is a pytest
# start (0.1 s warm, 0.3-0.9 s cold under containment), so about 3 batches a shard.
# Simulated on long-tailed suites of 48 tests, 2 shards: the best of the pairs tried
# at 0.1, 0.3 and 0.9 s a start (docs/benchmarks.md).
MIN_BATCH_DIVISOR = 4


def shard_count(
    requested: int | str, test_ids: Sequence[str], durations: Mapping[str, float]
) -> int:
    """How many shards to make: a number as asked (never more than there are tests), or
    for "auto" enough for about AUTO_SHARD_TARGET_S each, up to MAX_AUTO_SHARDS."""
    if not test_ids:
        return 1
    if requested == "auto":
        estimate = sum(durations.get(t, UNKNOWN_TEST_S) for t in test_ids)
        wanted = math.ceil(estimate / AUTO_SHARD_TARGET_S)
        return max(1, min(MAX_AUTO_SHARDS, wanted, len(test_ids)))
    return max(1, min(int(requested), len(test_ids)))


def plan_shards(
    test_ids: Sequence[str], durations: Mapping[str, float], shards: int
) -> list[list[str]]:
    """`shards` non-empty lists that together hold every id (each one timed) exactly
    once, in collection order within a list, so fixtures scoped to a module or class
    stay together. Runs of consecutive tests when that balances within CONTIGUOUS_SLACK
    of the best longest-first deal: a shard then imports and collects a few files
    instead of all of them."""
    count = max(1, min(shards, len(test_ids)))
    order = {test: i for i, test in enumerate(test_ids)}
    bins = _longest_first(test_ids, durations, order, count)
    if test_ids:
        runs = _consecutive_runs(test_ids, [max(durations[t], 0.0) for t in test_ids], count)
        if _max_load(runs, durations) <= _max_load(bins, durations) * (1 + CONTIGUOUS_SLACK):
            bins = runs
    return [sorted(b, key=order.__getitem__) for b in bins if b]


def _longest_first(
    known: Sequence[str], durations: Mapping[str, float], order: Mapping[str, int], count: int
) -> list[list[str]]:
    """Longest processing time first, each test into the lightest shard."""
    bins: list[list[str]] = [[] for _ in range(count)]
    loads = [(0.0, 0, i) for i in range(count)]
    for test in sorted(known, key=lambda t: (-durations[t], order[t])):
        load, tests, index = heapq.heappop(loads)
        bins[index].append(test)
        heapq.heappush(loads, (load + durations[test], tests + 1, index))
    return bins


def _consecutive_runs(
    tests: Sequence[str], weights: Sequence[float], count: int
) -> list[list[str]]:
    """`count` non-empty runs of consecutive tests with the smallest largest load (a
    binary search on that load, each candidate filled greedily)."""

    def fill(capacity: float) -> list[list[str]]:
        runs: list[list[str]] = [[]]
        load = 0.0
        for test, weight in zip(tests, weights, strict=True):
            if runs[-1] and load + weight > capacity:
                runs.append([])
                load = 0.0
            runs[-1].append(test)
            load += weight
        return runs

    low, high = max(weights), sum(weights)
    for _ in range(40):  # to well below any test's duration
        middle = (low + high) / 2
        if len(fill(middle)) <= count:
            high = middle
        else:
            low = middle
    runs = fill(high)
    while len(runs) < count:  # fewer were needed: halve the longest run (by tests)
        longest = max(range(len(runs)), key=lambda i: len(runs[i]))
        run = runs.pop(longest)
        half = len(run) // 2
        runs[longest:longest] = [run[:half], run[half:]]
    return runs


def _max_load(bins: Sequence[Sequence[str]], durations: Mapping[str, float]) -> float:
    return max(sum(durations[t] for t in b) for b in bins)


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
