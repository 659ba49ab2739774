"""The report body's sections about where a suite hung, the test-integrity guard, the
failure classification and the failure packet (pure markdown; never the frontmatter,
which the gate reads)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from worker.git.diff import DiffLine
from worker.report.budget import clip, fenced
from worker.review.classify import Classified
from worker.review.integrity import Finding, Integrity
from worker.suite.probe import Hang

MAX_LISTED = 50
MAX_ID_CHARS = 300  # one test id as listed
MAX_TEXT_CHARS = 2000  # one free-text item: a reason, a detail, a note
MAX_STACKS_CHARS = 8192  # the hang's stack dump, innermost frames first
MAX_PACKET_CHARS = 16384  # the failure packet's JSON
MAX_PHASES = 20  # rows of the timing table (a job has about ten phases)


def hang_section(hang: Hang) -> str:
    where = f"`{_id(hang.test)}`" if hang.test else "outside any test (collection or teardown)"
    parts = [
        "## Where it hung\n",
        f"The suite was killed at its hard timeout while running {where}.\n",
    ]
    if hang.stacks:
        parts += ["Every thread's stack a few seconds before the kill, innermost call first:\n"]
        parts.append(fenced(clip(hang.stacks, MAX_STACKS_CHARS)))
    else:
        parts.append("No stack dump was written before the kill.\n")
    return "\n".join(parts)


def phases_section(phases: Sequence[tuple[str, float]]) -> str:
    """Where this delivery's time went, up to the report itself; what follows it (the
    report, its push, the advance) is in the metrics and the trace."""
    shown = phases[:MAX_PHASES]
    rows = [f"| {name.replace('_', ' ')} | {seconds:.2f} |" for name, seconds in shown]
    return "\n".join(
        [
            "## Where the time went\n",
            "| phase | seconds |",
            "|---|---:|",
            *rows,
            "",
            "Writing, committing and pushing this report and the advance come after it: "
            "see the metric `testgate_phase_duration_seconds` or the job's trace.\n",
        ]
    )


def integrity_section(found: Integrity) -> str:
    parts = ["## Test integrity (compared with main's merge base)\n", _integrity_summary(found)]
    parts += _findings("Removed tests", found.removed)
    parts += _findings("Newly skipped tests", found.skipped)
    if found.moved:
        parts.append("### Moved or renamed (not flagged)\n")
        parts.append(
            listed(f"`{_id(m.old_id)}` -> `{_id(m.new_id)}` ({_text(m.how)})" for m in found.moved)
        )
    if found.excused:
        parts.append("### Removed with the code they tested (not flagged)\n")
        parts.append(listed(f"`{_id(e.test_id)}`: {_text(e.why)}" for e in found.excused))
    if found.config:
        parts.append("### pytest configuration changed\n")
        parts.append(fenced(_diff(found.config)))
    if found.unattributed:
        parts.append("### Skip or xfail lines outside any collected test (not flagged)\n")
        parts.append(fenced(_diff(found.unattributed)))
    parts += [f"Note: {_text(note)}.\n" for note in found.notes[:MAX_LISTED]]
    return "\n".join(parts)


def classification_section(classified: Sequence[Classified]) -> str:
    lines = [f"- `{_id(c.test_id)}`: **{c.failure_class}** ({_text(c.detail)})" for c in classified]
    return "## Failure classification\n\n" + listed(lines)


def packet_section(packet: dict[str, Any]) -> str:
    text = json.dumps(packet, indent=2, ensure_ascii=False, default=repr)
    if len(text) <= MAX_PACKET_CHARS:
        return "## Failure packet\n\n" + fenced(text, "json")
    shown = text[:MAX_PACKET_CHARS]
    note = f"The packet is cut here: {len(text) - len(shown)} more characters of JSON.\n"
    return "## Failure packet\n\n" + fenced(shown, "json") + "\n" + note


def _integrity_summary(found: Integrity) -> str:
    objection = found.objection
    if objection:
        return f"**FAIL:** {_text(objection)}. This guard can only turn a PASS into a FAIL.\n"
    if found.incomplete:
        return f"**Not checked:** {_text(found.incomplete)}. The verdict is the suite's alone.\n"
    return "No test of the merge base was removed or newly skipped.\n"


def _findings(title: str, findings: Sequence[Finding]) -> list[str]:
    if not findings:
        return []
    parts = [f"### {title}\n"]
    for finding in findings[:MAX_LISTED]:
        parts.append(f"- `{_id(finding.test_id)}`")
        explained = _diff(finding.lines) if finding.lines else "(no line of the diff explains it)"
        parts.append(fenced(explained))
    if len(findings) > MAX_LISTED:
        parts.append(f"- ... and {len(findings) - MAX_LISTED} more\n")
    return parts


def listed(lines: Iterable[str]) -> str:
    """The lines as a markdown list of at most MAX_LISTED items, then how many more."""
    items = list(lines)
    shown = [line if line.startswith("- ") else f"- {line}" for line in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"- ... and {len(items) - MAX_LISTED} more")
    return "\n".join(shown) + "\n"


def _diff(lines: Sequence[DiffLine]) -> str:
    return "\n".join(line.render() for line in lines[:MAX_LISTED])


def _id(test_id: str) -> str:
    return clip(test_id, MAX_ID_CHARS)


def _text(text: str) -> str:
    return clip(text, MAX_TEXT_CHARS)
