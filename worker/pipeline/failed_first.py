"""Which tests run first: those that failed on the branch's last run (pure).

A FAIL the agent has already seen once is the likeliest to come back, so running those
tests first shows it soonest; with a contract's `stop_after_failures` the run then
ends there. The list is kept per repo and branch in the shared state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FAILING = frozenset({"failed", "error"})


def still_failing(previous: Iterable[str], outcomes: Mapping[str, str]) -> list[str]:
    """The list to keep after a run: every test that failed now, and every test that
    failed before and reached no outcome now (a run stopped early did not clear it).
    A test that passed, was skipped or xfailed now leaves the list."""
    failing_now = {test for test, outcome in outcomes.items() if outcome in FAILING}
    kept = {test for test in previous if test not in outcomes}
    return sorted(failing_now | kept)
