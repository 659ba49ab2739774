"""Splitting one suite into shards and merging their results (pure).

A plan puts each collected test id into one shard, balanced by the durations recorded
on earlier runs (consecutive tests where that costs no balance, else longest first into
the lightest shard); tests never timed before are dealt round-robin. The merge is
strict: the job passes only if every shard ran, every shard passed and every planned
test was reported by some shard.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.verdict import Verdict, describe_exit_code, from_exit_code

MAX_AUTO_SHARDS = 8
AUTO_SHARD_TARGET_S = 30.0  # "auto" aims at shards of about this many seconds each
UNKNOWN_TEST_S = 1.0  # what "auto" assumes for a test it has never timed
MAX_MISSING_LISTED = 50
# How much less balanced than longest-first a plan of consecutive tests may be: worth
# it for a shard that collects 2 files instead of 20.
CONTIGUOUS_SLACK = 0.05


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
    """`shards` non-empty lists that together hold every id exactly once (in collection
    order within a shard, so fixtures scoped to a module or class stay together).

    Timed tests are split into runs of consecutive tests when that balances within
    CONTIGUOUS_SLACK of the best longest-first deal: a shard then imports and collects a
    few files instead of all of them. Tests never timed before are dealt round-robin."""
    count = max(1, min(shards, len(test_ids)))
    order = {test: i for i, test in enumerate(test_ids)}
    known = [t for t in test_ids if t in durations]
    unknown = [t for t in test_ids if t not in durations]
    bins = _longest_first(known, durations, order, count)
    if known and len(known) >= count:
        runs = _consecutive_runs(known, [max(durations[t], 0.0) for t in known], count)
        if _max_load(runs, durations) <= _max_load(bins, durations) * (1 + CONTIGUOUS_SLACK):
            bins = runs
    # (seconds, tests, shard): ties in time go to the shard with fewer tests, so tests
    # timed at 0 s still spread out.
    loads = sorted((sum(durations[t] for t in b), len(b), i) for i, b in enumerate(bins))
    for i, test in enumerate(unknown):
        bins[loads[i % count][2]].append(test)
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


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    outcome: str  # "passed", "failed", "error", "skipped"
    seconds: float


@dataclass(frozen=True)
class ShardResult:
    """What one shard task returns (JSON round trip through the result backend)."""

    index: int
    ran: bool
    exit_code: int | None
    duration_s: float
    cases: dict[str, TestCase] = field(default_factory=dict)
    problem: str = ""  # why it did not run (timeout, spawn error, checkout failure)
    output_tail: str = ""
    attempts: int = 1
    final: bool = False  # did not run, and running it again cannot help
    # Why the shard's own records do not support its exit status 0 ("" when they do).
    evidence: str = ""
    passed: int = 0  # tests its probe saw pass: the merge needs one over all shards

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "ran": self.ran,
            "exit_code": self.exit_code,
            "duration_s": self.duration_s,
            "cases": {k: [c.outcome, c.seconds] for k, c in self.cases.items()},
            "problem": self.problem,
            "output_tail": self.output_tail,
            "attempts": self.attempts,
            "final": self.final,
            "evidence": self.evidence,
            "passed": self.passed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShardResult:
        cases = {str(k): TestCase(str(v[0]), float(v[1])) for k, v in data["cases"].items()}
        exit_code = data.get("exit_code")
        return cls(
            index=int(data["index"]),
            ran=bool(data["ran"]),
            exit_code=exit_code if isinstance(exit_code, int) else None,
            duration_s=float(data["duration_s"]),
            cases=cases,
            problem=str(data.get("problem", "")),
            output_tail=str(data.get("output_tail", "")),
            attempts=int(data.get("attempts", 1)),
            final=bool(data.get("final", False)),
            evidence=str(data.get("evidence", "")),
            passed=int(data.get("passed", 0)),
        )


@dataclass(frozen=True)
class Merged:
    """One verdict for the whole suite, or the reason the shards cannot give one."""

    verdict: Verdict | None  # None: some shard never ran (an infrastructure fault)
    not_run: str  # which shards did not run and why ("" when all ran)
    exit_code: int | None
    tests_total: int
    failing: tuple[str, ...]
    missing: tuple[str, ...]
    durations: dict[str, float]  # per test, to record for the next plan
    wall_s: float  # the longest shard
    output_tail: str


def merge_shards(
    planned: Sequence[Sequence[str]], results: Sequence[ShardResult], shards: int = 0
) -> Merged:
    """`planned`: every test id that must be reported, in lists (one per shard of a fixed
    plan, or the dealt batches); `shards`: how many shard results to expect (0: one per
    list of `planned`)."""
    count = shards or len(planned)
    by_index = {r.index: r for r in results}
    absent = [i for i in range(count) if i not in by_index]
    not_run = [
        f"shard {r.index + 1}/{count}: {r.problem or 'no exit code'}"
        for r in sorted(results, key=lambda r: r.index)
        if not r.ran
    ] + [f"shard {i + 1}/{count}: no result" for i in absent]
    cases: dict[str, TestCase] = {}
    for result in results:
        cases.update(result.cases)
    expected = [t for shard in planned for t in shard]
    missing = tuple(t for t in expected if t not in cases)
    failing = tuple(t for t, c in cases.items() if c.outcome in ("failed", "error"))
    tails = [f"[shard {r.index + 1}] {r.output_tail}" for r in results if r.exit_code != 0]
    ran = [r for r in results if r.ran]
    exit_code = _merged_exit_code(ran, missing)
    verdict = None if not_run else _verdict(exit_code, ran, missing)
    return Merged(
        verdict=verdict,
        not_run="; ".join(not_run),
        exit_code=None if not_run else exit_code,
        tests_total=len(cases),
        failing=failing,
        missing=missing,
        durations={t: c.seconds for t, c in cases.items()},
        wall_s=max((r.duration_s for r in results), default=0.0),
        output_tail="\n".join(tails),
    )


def _merged_exit_code(ran: Sequence[ShardResult], missing: Sequence[str]) -> int | None:
    bad = [r.exit_code for r in ran if r.exit_code != 0]
    if bad:
        return bad[0]
    unproven = any(r.evidence for r in ran) or not any(r.passed for r in ran)
    return 1 if missing or unproven else 0


def _verdict(exit_code: int | None, ran: Sequence[ShardResult], missing: Sequence[str]) -> Verdict:
    """The merged exit code decides, as for one suite (verdict.from_exit_code); the
    reason says which shard failed or which tests went missing."""
    decided = from_exit_code(exit_code)
    failed = [r for r in ran if r.exit_code != 0]
    unproven = [r for r in ran if r.exit_code == 0 and r.evidence]
    if unproven and not failed:
        first = unproven[0]
        return Verdict(
            "FAIL",
            "code-fail",
            f"shard {first.index + 1} exited 0, but {first.evidence}"
            + (f" (and {len(unproven) - 1} more shard(s))" if len(unproven) > 1 else ""),
        )
    if not failed and not missing and not any(r.passed for r in ran):
        return Verdict("FAIL", "code-fail", f"{len(ran)} shards exited 0, but no test passed")
    if failed:
        shards = ", ".join(
            f"shard {r.index + 1} ({describe_exit_code(r.exit_code)})" for r in failed
        )
        reason = f"{len(ran)} shards ran; failed: {shards}"
    elif missing:
        listed = ", ".join(missing[:MAX_MISSING_LISTED])
        more = len(missing) - MAX_MISSING_LISTED
        reason = f"{len(missing)} planned test(s) were reported by no shard: {listed}" + (
            f" and {more} more" if more > 0 else ""
        )
    else:
        reason = f"all {len(ran)} shards passed ({decided.reason})"
    return Verdict(decided.result, decided.outcome, reason)


@dataclass(frozen=True)
class ShardPlan:
    """A job to split, to be sent once its checkout is gone: the test ids of each shard
    (a fixed plan), or the batches dealt into the shard queue `deal_id` in dealing
    order, for `shard_count` shards to pull."""

    commit: str
    plan: tuple[tuple[str, ...], ...]
    shard_count: int = 0  # 0: a fixed plan, one shard per entry
    deal_id: str = ""
    ran_first: tuple[str, ...] = ()  # failed on the branch's last run: the first batch

    @property
    def shards(self) -> int:
        return self.shard_count or len(self.plan)

    @property
    def tests(self) -> int:
        return sum(len(ids) for ids in self.plan)

    def describe(self) -> str:
        dealt = f" pulling {len(self.plan)} batches" if self.deal_id else ""
        return f"{self.tests} tests at {self.commit} sent as {self.shards} shards{dealt}"
