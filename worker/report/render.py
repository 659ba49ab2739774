"""The report artifact's text (docs/contract.md §5). Pure: plain data in, markdown out.

The frontmatter is machine-read by the orchestrator's gate, so its keys, their order
and their values are fixed; extra keys follow `smoke:` and never use a field name the
gate reads. The body is for humans and is bounded whatever the suite printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from worker.report.sections import (
    classification_section,
    hang_section,
    integrity_section,
    packet_section,
)
from worker.review.classify import Classified
from worker.review.integrity import Integrity
from worker.suite.probe import Hang
from worker.verdict import Verdict

MAX_FAILING_LISTED = 50
MAX_TAIL_CHARS = 4096
_BACKTICK_RUN = re.compile(r"`+")


@dataclass(frozen=True)
class ReportFacts:
    """Everything the report says, already decided."""

    work_item_id: str
    repo: str
    branch: str
    commit: str | None
    verdict: Verdict
    exit_code: int | None
    smoke_state: str
    smoke_detail: str
    command: str
    created_at: date
    duration_s: float | None = None
    tests_total: int | None = None
    failing_tests: tuple[str, ...] = ()
    output_tail: str = ""
    attempts: int = 1
    limit_notes: tuple[str, ...] = ()  # resource limits the suite ran into
    hang: Hang | None = None  # where a suite killed at its timeout hung
    integrity: Integrity | None = None  # the test-integrity guard's findings, if it ran
    classified: tuple[Classified, ...] = ()  # why each failing test failed, if asked
    failure_packet: dict[str, Any] | None = None  # for the developer agent, on a FAIL


def render_report(facts: ReportFacts) -> str:
    return _frontmatter(facts) + "\n" + _body(facts)


def _frontmatter(facts: ReportFacts) -> str:
    lines = [
        "---",
        f"result: {facts.verdict.result}",
        f"work_item: {facts.work_item_id}",
        "stage: testing",
        "author_agent: test-runner",
        f"status: {facts.verdict.status}",
        f"created_at: {facts.created_at.isoformat()}",
        "model_used: n/a",
        f"exit_code: {facts.exit_code}",
        f"smoke: {facts.smoke_state}",
        f"outcome: {facts.verdict.outcome}",
    ]
    if facts.commit:
        lines.append(f"commit: {facts.commit}")
    if facts.duration_s is not None:
        lines.append(f"duration_s: {facts.duration_s:.1f}")
    if facts.tests_total is not None:
        lines.append(f"tests_total: {facts.tests_total}")
        lines.append(f"tests_failing: {len(facts.failing_tests)}")
    lines.append("---")
    return "\n".join(lines) + "\n"


def _body(facts: ReportFacts) -> str:
    verdict = facts.verdict
    sections = [
        f"# Test gate: {verdict.result}\n",
        f"**Why:** {verdict.reason}.\n",
        "## What ran\n",
        f"- repo `{facts.repo}`, branch `{facts.branch}`, commit `{facts.commit or 'unknown'}`",
        f"- command `{facts.command}`",
        f"- smoke: {facts.smoke_state} ({facts.smoke_detail})",
        f"- attempts: {facts.attempts}",
        "- verdict written by the deterministic test runner (no LLM): pytest's exit code "
        "AND-ed with the read-only smoke.\n",
    ]
    if verdict.outcome == "tool-error":
        sections.append(
            "The suite never executed: this is an infrastructure fault, not a code defect. "
            "The runner failed closed so that no untested branch advances.\n"
        )
    if facts.limit_notes:
        notes = "\n".join(f"- {note}" for note in facts.limit_notes)
        sections.append(f"## Resource limits reached\n\n{notes}\n")
    if facts.failing_tests:
        sections.append(_failing_section(facts.failing_tests))
    if facts.hang is not None:
        sections.append(hang_section(facts.hang))
    if facts.integrity is not None:
        sections.append(integrity_section(facts.integrity))
    if facts.classified:
        sections.append(classification_section(facts.classified))
    if facts.failure_packet is not None:
        sections.append(packet_section(facts.failure_packet))
    if facts.output_tail:
        sections.append(_tail_section(facts.output_tail))
    return "\n".join(sections)


def _failing_section(failing: tuple[str, ...]) -> str:
    shown = failing[:MAX_FAILING_LISTED]
    lines = ["## Failing tests\n", *(f"- `{node}`" for node in shown)]
    if len(failing) > len(shown):
        lines.append(f"- ... and {len(failing) - len(shown)} more")
    return "\n".join(lines) + "\n"


def _tail_section(tail: str) -> str:
    text = tail[-MAX_TAIL_CHARS:].strip("\n")
    # The fence must be longer than any backtick run inside, or the output would
    # close it early and spill into the markdown.
    longest = max((len(m.group()) for m in _BACKTICK_RUN.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"## Output (last {len(text)} characters)\n\n{fence}\n{text}\n{fence}\n"
