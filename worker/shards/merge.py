"""A shard's batch runs folded into its result, and every shard's result merged into
one run of the whole suite (pure).

The merged run is judged as a whole suite's run is (worker/pipeline/outcome.py): its
exit code is the first non-zero one of a shard; its session record adds up every
batch's record, and must account for every dealt test. Each batch's own records are
checked as a whole run's would be (but for needing a passing test of its own), and
a dealt test no shard reported is an objection too: either keeps exit 0 from passing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from worker.evidence import SessionRecord
from worker.shards.protocol import Batch, Deal, ShardResult
from worker.suite.run import SuiteRun
from worker.suite.tally import Tally

MAX_MISSING_LISTED = 50


def shard_result(
    index: int, runs: Sequence[tuple[Batch, SuiteRun]], *, attempts: int
) -> ShardResult:
    """One shard's result from the batches it ran, each of which ran (an exit code, or
    it started). The exit code is the first non-zero one (0 when every batch exited 0);
    the evidence objection is the first of a batch that exited 0. A shard that drew no
    batch ran nothing and proves nothing: the merge still needs a passing test."""
    cases: dict[str, tuple[str, float]] = {}
    counts: Counter[str] = Counter()
    status = 0
    exit_code: int | None = 0
    evidence = ""
    tails: list[str] = []
    for batch, suite in runs:
        cases.update({o.test_id: (o.outcome, o.seconds) for o in suite.outcomes})
        if len(suite.session) == 1:  # otherwise the batch objects (or did not exit 0)
            counts.update(suite.session[0].counts)
            status = status or suite.session[0].exitstatus
        if suite.exit_code != 0:
            tails.append(f"[batch {batch.number + 1}] {suite.output_tail}")
            if exit_code == 0:
                exit_code = suite.exit_code  # None: it started and was killed
        elif not evidence and (objection := suite.evidence_objection(require_a_pass=False)):
            evidence = f"batch {batch.number + 1}: {objection}"
    return ShardResult(
        index=index,
        ran=True,
        exit_code=exit_code,
        duration_s=sum(suite.duration_s for _, suite in runs),
        cases=cases,
        counts=dict(counts),
        status=status,
        evidence=evidence,
        output_tail="\n".join(tails),
        attempts=attempts,
    )


@dataclass(frozen=True)
class Merged:
    """The whole suite as the shards ran it, or why it cannot be judged."""

    suite: SuiteRun | None  # None: some shard never ran (an infrastructure fault)
    not_run: str  # which shards did not run and why ("" when all ran)
    objection: str | None  # a batch's records, or a dealt test no shard reported
    outcomes: dict[str, str]  # per test, for the failing-first list
    durations: dict[str, float]  # per test, for the next deal


def merge(deal: Deal, results: Sequence[ShardResult]) -> Merged:
    by_index = {r.index: r for r in results}
    ran = [by_index[i] for i in sorted(by_index) if by_index[i].ran]
    not_run = [
        f"shard {i + 1}/{deal.shards}: "
        + (by_index[i].problem or "no exit code" if i in by_index else "no result")
        for i in range(deal.shards)
        if i not in by_index or not by_index[i].ran
    ]
    cases: dict[str, tuple[str, float]] = {}
    counts: Counter[str] = Counter()
    for result in ran:
        cases.update(result.cases)
        counts.update(result.counts)
    outcomes = {t: outcome for t, (outcome, _) in cases.items()}
    durations = {t: seconds for t, (_, seconds) in cases.items()}
    if not_run:
        return Merged(None, "; ".join(not_run), None, outcomes, durations)
    expected = [t for batch in deal.batches for t in batch]
    missing = tuple(t for t in expected if t not in cases)
    record = SessionRecord(
        exitstatus=next((r.status for r in ran if r.status), 0),
        collected=len(expected),
        counts=dict(counts),
    )
    failed = [r for r in ran if r.exit_code != 0]
    tail = "\n".join(
        [f"{deal.shards} shards pulled {len(deal.batches)} batches"]
        + [f"[shard {r.index + 1}] {r.output_tail}" for r in failed]
    )
    failing = tuple(t for t, outcome in outcomes.items() if outcome in ("failed", "error"))
    suite = SuiteRun(
        command=(),
        exit_code=failed[0].exit_code if failed else 0,
        timed_out=False,
        spawn_error=None,
        duration_s=max((r.duration_s for r in ran), default=0.0),
        output_tail=tail,
        output_bytes=len(tail),
        tally=Tally(len(cases), failing + missing, counts["skipped"] + counts["xfailed"]),
        started=True,
        session=(record,),
    )
    return Merged(suite, "", _objection(ran, missing), outcomes, durations)


def _objection(ran: Sequence[ShardResult], missing: Sequence[str]) -> str | None:
    """What the shards' own records hold against exit status 0, beyond the counts."""
    unproven = [r for r in ran if r.exit_code == 0 and r.evidence]
    if unproven:
        others = f" (and {len(unproven) - 1} more shard(s))" if len(unproven) > 1 else ""
        return f"shard {unproven[0].index + 1}, {unproven[0].evidence}{others}"
    if missing:
        listed = ", ".join(missing[:MAX_MISSING_LISTED])
        more = len(missing) - MAX_MISSING_LISTED
        return f"{len(missing)} dealt test(s) were reported by no shard: {listed}" + (
            f" and {more} more" if more > 0 else ""
        )
    return None
