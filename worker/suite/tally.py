"""What the report counts of one pytest run, read from the in-suite probe's records
(pure). No JUnit XML is written: the probe's session record already counts every test
by outcome and its outcome lines name the failing ones, so a second record of the
same facts would only cost the suite time (docs/benchmarks.md, in-suite cost)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.evidence import SessionRecord
from worker.suite.probe import TestOutcome


@dataclass(frozen=True)
class Tally:
    tests: int | None  # tests that reached an outcome; None without one session record
    failing: tuple[str, ...]  # ids of the failed or erroring tests, first failure first
    skipped: int  # skipped and xfailed


NO_TALLY = Tally(None, (), 0)


def tally(session: Sequence[SessionRecord], outcomes: Sequence[TestOutcome]) -> Tally:
    """The counts from the one session record (when there is exactly one), the failing
    ids from the outcome lines (deduplicated: a re-run or xdist may repeat one)."""
    failing = tuple(dict.fromkeys(o.test_id for o in outcomes if o.outcome == "failed"))
    if len(session) != 1:
        skipped = sum(1 for o in outcomes if o.outcome in ("skipped", "xfailed"))
        return Tally(None, failing, skipped)
    record = session[0]
    return Tally(record.finished_tests, failing, record.count("skipped") + record.count("xfailed"))
