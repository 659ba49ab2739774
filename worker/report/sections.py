"""The report body's sections about where a suite hung, the test-integrity guard, the
failure classification and the failure packet (pure markdown; never the frontmatter,
which the gate reads)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from worker.git.diff import DiffLine
from worker.review.classify import Classified
from worker.review.integrity import Finding, Integrity
from worker.suite.probe import Hang

MAX_LISTED = 50
_BACKTICK_RUN = re.compile(r"`+")


def fenced(text: str, info: str = "") -> str:
    """A code block that `text` cannot close early, whatever backticks it holds."""
    longest = max((len(m.group()) for m in _BACKTICK_RUN.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}\n"


def hang_section(hang: Hang) -> str:
    where = f"`{hang.test}`" if hang.test else "outside any test (collection or teardown)"
    parts = [
        "## Where it hung\n",
        f"The suite was killed at its hard timeout while running {where}.\n",
    ]
    if hang.stacks:
        parts += ["Every thread's stack a few seconds before the kill, innermost call first:\n"]
        parts.append(fenced(hang.stacks))
    else:
        parts.append("No stack dump was written before the kill.\n")
    return "\n".join(parts)


def integrity_section(found: Integrity) -> str:
    parts = ["## Test integrity (compared with main's merge base)\n", _integrity_summary(found)]
    parts += _findings("Removed tests", found.removed)
    parts += _findings("Newly skipped tests", found.skipped)
    if found.moved:
        parts.append("### Moved or renamed (not flagged)\n")
        parts.append(_listed(f"`{m.old_id}` -> `{m.new_id}` ({m.how})" for m in found.moved))
    if found.excused:
        parts.append("### Removed with the code they tested (not flagged)\n")
        parts.append(_listed(f"`{e.test_id}`: {e.why}" for e in found.excused))
    if found.config:
        parts.append("### pytest configuration changed\n")
        parts.append(fenced(_diff(found.config)))
    if found.unattributed:
        parts.append("### Skip or xfail lines outside any collected test (not flagged)\n")
        parts.append(fenced(_diff(found.unattributed)))
    parts += [f"Note: {note}.\n" for note in found.notes]
    return "\n".join(parts)


def classification_section(classified: Sequence[Classified]) -> str:
    lines = [f"- `{c.test_id}`: **{c.failure_class}** ({c.detail})" for c in classified]
    return "## Failure classification\n\n" + _listed(lines)


def packet_section(packet: dict[str, Any]) -> str:
    text = json.dumps(packet, indent=2, ensure_ascii=False)
    return "## Failure packet\n\n" + fenced(text, "json")


def _integrity_summary(found: Integrity) -> str:
    objection = found.objection
    if objection:
        return f"**FAIL:** {objection}. This guard can only turn a PASS into a FAIL.\n"
    if found.incomplete:
        return f"**Not checked:** {found.incomplete}. The verdict is the suite's alone.\n"
    return "No test of the merge base was removed or newly skipped.\n"


def _findings(title: str, findings: Sequence[Finding]) -> list[str]:
    if not findings:
        return []
    parts = [f"### {title}\n"]
    for finding in findings[:MAX_LISTED]:
        parts.append(f"- `{finding.test_id}`")
        explained = _diff(finding.lines) if finding.lines else "(no line of the diff explains it)"
        parts.append(fenced(explained))
    if len(findings) > MAX_LISTED:
        parts.append(f"- ... and {len(findings) - MAX_LISTED} more\n")
    return parts


def _listed(lines: Iterable[str]) -> str:
    items = list(lines)
    shown = [line if line.startswith("- ") else f"- {line}" for line in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"- ... and {len(items) - MAX_LISTED} more")
    return "\n".join(shown) + "\n"


def _diff(lines: Sequence[DiffLine]) -> str:
    return "\n".join(line.render() for line in lines[:MAX_LISTED])
