"""What a PASS under trusted tests needs besides the deciding run's own evidence (pure):
the framework unmodified, no trusted test module skipped whole or trusted test skipped
from outside the trusted files, and the branch's own run passing."""

from __future__ import annotations

from collections.abc import Mapping

from worker.review.trusted_files import (
    collect_skip_objection,
    framework_objection,
    untrusted_skips,
)
from worker.suite.run import SuiteRun
from worker.verdict import from_exit_code, with_evidence

MAX_LISTED = 10


def trusted_objections(
    deciding: SuiteRun, own: SuiteRun | None, root: str, trusted: Mapping[str, bytes]
) -> list[str | None]:
    """Each reason the trusted run does not allow a PASS (None where it has none).
    `root` is the worktree it ran in, `trusted` the trusted files by path, `own` the
    branch's own run when it was another one."""
    found: list[str | None] = []
    if len(deciding.session) == 1:
        record = deciding.session[0]
        found.append(framework_objection(record.framework, root, trusted))
        found.append(collect_skip_objection(record.collect_skips, root, trusted))
    skips = untrusted_skips(deciding.outcomes, root, trusted)
    if skips:
        more = f"; and {len(skips) - MAX_LISTED} more" if len(skips) > MAX_LISTED else ""
        shown = "; ".join(skips[:MAX_LISTED]) + more
        found.append(f"{len(skips)} trusted test(s) did not run to a pass: {shown}")
    if own is not None:
        verdict = with_evidence(from_exit_code(own.exit_code), own.evidence_objection())
        if verdict.result == "FAIL":
            found.append(f"the branch's own tests did not pass: {verdict.reason}")
    return found
