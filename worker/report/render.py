"""The report artifact's text (docs/contract.md §5). Pure: plain data in, markdown out.

The frontmatter is machine-read by the orchestrator's gate, so its keys, their order
and their values are fixed; extra keys follow `smoke:` and never use a field name the
gate reads. The body is for humans, and bounded whatever the suite printed
(worker/report/budget.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from worker.report.budget import clip, fenced, fit_sections, utf8_len
from worker.report.sections import (
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    classification_section,
    hang_section,
    integrity_section,
    listed,
    packet_section,
    phases_section,
)
from worker.review.classify import Classified
from worker.review.integrity import Integrity
from worker.suite.probe import Hang
from worker.verdict import Verdict

MAX_REPORT_BYTES = 64 * 1024
MAX_TAIL_CHARS = 4096
MAX_NOTES_LISTED = 20
# Frontmatter values come from validated input (ids of at most 100 characters, SHAs);
# this only keeps a value on one line and short if that validation were ever bypassed.
MAX_FRONTMATTER_VALUE = 200


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
    phases: tuple[tuple[str, float], ...] = ()  # seconds per phase, up to this report
    ran_first: tuple[str, ...] = ()  # failed on the branch's last run, so run first


def render_report(facts: ReportFacts) -> str:
    """The report: the frontmatter intact, then the body cut to fit MAX_REPORT_BYTES."""
    head = _frontmatter(facts) + "\n"
    report = head + fit_sections(_body(facts), MAX_REPORT_BYTES - utf8_len(head))
    # Output decoded leniently can hold lone surrogates, which no file can store.
    return report.encode("utf-8", "replace").decode("utf-8")


def _frontmatter(facts: ReportFacts) -> str:
    lines = [
        "---",
        f"result: {facts.verdict.result}",
        f"work_item: {_value(facts.work_item_id)}",
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
        lines.append(f"commit: {_value(facts.commit)}")
    if facts.duration_s is not None:
        lines.append(f"duration_s: {facts.duration_s:.1f}")
    if facts.tests_total is not None:
        lines += [f"tests_total: {facts.tests_total}", f"tests_failing: {len(facts.failing_tests)}"]
    lines.append("---")
    return "\n".join(lines) + "\n"


def _value(text: str) -> str:
    return clip(" ".join(text.splitlines()), MAX_FRONTMATTER_VALUE)


def _body(facts: ReportFacts) -> list[str]:
    verdict = facts.verdict
    where = (
        f"- repo `{clip(facts.repo, MAX_ID_CHARS)}`, branch `{clip(facts.branch, MAX_ID_CHARS)}`,"
        f" commit `{clip(facts.commit or 'unknown', MAX_ID_CHARS)}`"
    )
    sections = [
        f"# Test gate: {verdict.result}\n",
        f"**Why:** {clip(verdict.reason, MAX_TEXT_CHARS)}.\n",
        "## What ran\n",
        where,
        f"- command `{clip(facts.command, MAX_TEXT_CHARS)}`",
        f"- smoke: {facts.smoke_state} ({clip(facts.smoke_detail, MAX_TEXT_CHARS)})",
        f"- attempts: {facts.attempts}",
        "- verdict written by the deterministic test runner (no LLM): pytest's exit code "
        "AND-ed with the read-only smoke.\n",
    ]
    if verdict.outcome == "tool-error":
        sections.append(
            "The suite never executed: this is an infrastructure fault, not a code defect. "
            "The runner failed closed so that no untested branch advances.\n"
        )
    if facts.ran_first:
        order = (
            f"{len(facts.ran_first)} test(s) that failed on this branch's last run ran first, "
            "in this order; the others followed in collection order.\n"
        )
        sections.append(f"## Order\n\n{order}\n{_id_list(facts.ran_first)}")
    if facts.limit_notes:
        shown = facts.limit_notes[:MAX_NOTES_LISTED]
        notes = "\n".join(f"- {clip(note, MAX_TEXT_CHARS)}" for note in shown)
        sections.append(f"## Resource limits reached\n\n{notes}\n")
    if facts.failing_tests:
        sections.append(f"## Failing tests\n\n{_id_list(facts.failing_tests)}")
    if facts.hang is not None:
        sections.append(hang_section(facts.hang))
    if facts.integrity is not None:
        sections.append(integrity_section(facts.integrity))
    if facts.classified:
        sections.append(classification_section(facts.classified))
    if facts.failure_packet is not None:
        sections.append(packet_section(facts.failure_packet))
    if facts.phases:
        sections.append(phases_section(facts.phases))
    if facts.output_tail:
        sections.append(_tail_section(facts.output_tail))
    return sections


def _id_list(ids: tuple[str, ...]) -> str:
    return listed(f"`{clip(node, MAX_ID_CHARS)}`" for node in ids)


def _tail_section(tail: str) -> str:
    text = tail[-MAX_TAIL_CHARS:].strip("\n")  # the output's end matters most
    return f"## Output (last {len(text)} characters)\n\n" + fenced(text)
