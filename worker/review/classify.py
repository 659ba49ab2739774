"""Why each failing test failed, from two re-runs of just those tests (pure).

- flaky: it passed when the branch's failing tests were re-run right away (this
  includes a failure that depends on the order or company of other tests);
- pre-existing: it fails on the merge base with main too;
- introduced: it passes (or is skipped) on the merge base, or does not exist there;
- unknown: a re-run could not tell (it did not run, or ended without a result).

A classification explains a FAIL; it never changes the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

FailureClass = Literal["introduced", "pre-existing", "flaky", "unknown"]


@dataclass(frozen=True)
class Classified:
    test_id: str
    failure_class: FailureClass
    detail: str


def classify(
    failing: Sequence[str],
    branch_rerun: Mapping[str, str] | None,
    base_rerun: Mapping[str, str] | None,
    *,
    base_label: str = "the merge base",
) -> tuple[Classified, ...]:
    """`*_rerun` map ids to outcomes ("passed", "failed", "skipped", "xfailed", or
    "missing": the complete run had no such test); an id without an entry got no result;
    None means that re-run could not be made at all."""
    return tuple(_one(t, branch_rerun, base_rerun, base_label) for t in failing)


def _one(
    test_id: str,
    branch_rerun: Mapping[str, str] | None,
    base_rerun: Mapping[str, str] | None,
    base_label: str,
) -> Classified:
    again = (branch_rerun or {}).get(test_id)
    if again == "passed":
        return Classified(test_id, "flaky", "passed when re-run on the branch")
    if base_rerun is None:
        return Classified(test_id, "unknown", f"could not be re-run on {base_label}")
    before = base_rerun.get(test_id)
    if before == "failed":
        return Classified(test_id, "pre-existing", f"fails on {base_label} too")
    if before == "passed":
        return Classified(test_id, "introduced", f"passes on {base_label}")
    if before in ("skipped", "xfailed"):
        return Classified(test_id, "introduced", f"{before} on {base_label}")
    if before == "missing":
        return Classified(test_id, "introduced", f"not a test on {base_label}: new on the branch")
    return Classified(test_id, "unknown", f"no result on {base_label}")
