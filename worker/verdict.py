"""Where PASS is decided (docs/contract.md §7). Pure functions over plain data.

Level 1, the suite ran: its exit code is trusted; only 0 passes, everything else
(any other int, a signal, None, a non-int) fails closed. A green suite is then AND-ed
with the smoke. Level 2, the suite never ran: an infrastructure fault, which becomes
a FAIL only once the retry budget is spent (`infrastructure_fail`).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Literal

from worker.smoke import SmokeResult

Result = Literal["PASS", "FAIL"]
Outcome = Literal["code-pass", "code-fail", "tool-error"]

# pytest's documented exit codes (https://docs.pytest.org/en/stable/reference/exit-codes.html).
_PYTEST_EXIT_CODES = {
    0: "all tests passed",
    1: "tests were collected and run but some of them failed",
    2: "test execution was interrupted by the user or collection errors occurred",
    3: "pytest hit an internal error",
    4: "pytest command line usage error (for example a conftest.py that fails to import)",
    5: "no tests were collected",
}


@dataclass(frozen=True)
class Verdict:
    result: Result
    outcome: Outcome
    reason: str

    @property
    def status(self) -> str:
        """The report's `status:`, aligned with `result:` so the gate never disagrees."""
        return "success" if self.result == "PASS" else "failed"


def describe_exit_code(exit_code: object) -> str:
    """What an exit code means, in words a developer can act on."""
    if isinstance(exit_code, bool) or not isinstance(exit_code, int):
        return f"no usable exit code ({exit_code!r})"
    if exit_code < 0:
        return (
            f"the suite was killed by {_signal_name(-exit_code)}, a signal the runner did not send"
        )
    meaning = _PYTEST_EXIT_CODES.get(exit_code, "an exit code pytest does not define")
    return f"exit code {exit_code}: {meaning}"


def from_exit_code(exit_code: object) -> Verdict:
    """Level 1 before the smoke: only the integer 0 is a pass."""
    if isinstance(exit_code, int) and not isinstance(exit_code, bool) and exit_code == 0:
        return Verdict("PASS", "code-pass", describe_exit_code(exit_code))
    return Verdict("FAIL", "code-fail", describe_exit_code(exit_code))


def with_smoke(suite: Verdict, smoke: SmokeResult) -> Verdict:
    """A green suite stays green only if the smoke did not fail."""
    failed = smoke.state == "failed"
    return with_evidence(suite, f"the smoke failed: {smoke.detail}" if failed else None)


def with_evidence(suite: Verdict, objection: str | None) -> Verdict:
    """Exit status 0 is a PASS only when the gate's own record of the session agrees
    (worker/evidence.py); without that agreement it is a FAIL of the code."""
    if suite.result == "PASS" and objection is not None:
        return Verdict("FAIL", "code-fail", f"{suite.reason}, but {objection}")
    return suite


def with_guard(suite: Verdict, objection: str | None) -> Verdict:
    """A guard (the test-integrity check) can only object: an objection turns any
    verdict into a code FAIL, and no objection leaves the verdict exactly as it was."""
    if objection is None or suite.result == "PASS":
        return with_evidence(suite, objection)
    return Verdict("FAIL", suite.outcome, f"{suite.reason}; and {objection}")


def infrastructure_fail(why: str, attempts: int) -> Verdict:
    """Level 2 with the retry budget spent: fail closed, and say it was not the code."""
    return Verdict(
        "FAIL",
        "tool-error",
        f"the suite never executed ({why}) after {attempts} attempt(s); "
        "infrastructure, not a code defect",
    )


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"
