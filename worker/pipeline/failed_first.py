"""Which tests run first: those that failed on the branch's last run (pure).

A FAIL the agent has already seen once is the likeliest to come back, so running those
tests first shows it soonest; with a contract's `stop_after_failures` the run then
ends there. The list is kept per repo and branch in the shared state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FAILING = frozenset({"failed", "error"})
# What is kept of a run's failing tests: the record they come from is the suite's to
# write, so a suite that floods it must not flood the shared state (nor the next run's
# order file). Past these bounds the list is cut: the rest runs in its own order.
MAX_KEPT = 1000
MAX_ID_CHARS = 1000


def still_failing(previous: Iterable[str], outcomes: Mapping[str, str]) -> list[str]:
    """The list to keep after a run: every test that failed now, and every test that
    failed before and reached no outcome now (a run stopped early did not clear it).
    A test that passed, was skipped or xfailed now leaves the list. At most MAX_KEPT
    ids, none longer than MAX_ID_CHARS."""
    failing_now = {test for test, outcome in outcomes.items() if outcome in FAILING}
    kept = {test for test in previous if test not in outcomes}
    return sorted(t for t in failing_now | kept if len(t) <= MAX_ID_CHARS)[:MAX_KEPT]
