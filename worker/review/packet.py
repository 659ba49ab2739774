"""The failure packet (pure): what a developer agent needs to act on a FAIL, as one
JSON-able dict - the failing ids and their first messages, a command that reproduces
them, their classification and the integrity guard's findings. Bounded in size: it
goes into the report body and into the advance message."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from worker.review.classify import Classified
from worker.review.integrity import Finding, Integrity
from worker.suite.probe import TestOutcome

MAX_TESTS = 20
MAX_MESSAGE_CHARS = 300
MAX_LINES = 5


def failing_tests(outcomes: Sequence[TestOutcome]) -> tuple[TestOutcome, ...]:
    """The failed tests with their messages, each once (a re-run may repeat one)."""
    failed = {o.test_id: o for o in outcomes if o.outcome == "failed"}
    return tuple(failed.values())


def failure_packet(
    failing: Sequence[TestOutcome],
    classified: Sequence[Classified] | None,
    integrity: Integrity | None,
) -> dict[str, Any]:
    shown = failing[:MAX_TESTS]
    return {
        "failing_tests": [t.test_id for t in shown],
        "failing_count": len(failing),
        "messages": {t.test_id: _bounded(t.message) for t in shown},
        "reproduce": reproduce_command([t.test_id for t in shown]),
        "classification": None
        if classified is None
        else {c.test_id: {"class": c.failure_class, "detail": c.detail} for c in classified},
        "integrity": None if integrity is None else _integrity(integrity),
    }


def reproduce_command(test_ids: Sequence[str]) -> str | None:
    """One line to paste in the repo's root; ids are shell-quoted."""
    if not test_ids:
        return None
    return "python -m pytest " + " ".join(shlex.quote(t) for t in test_ids)


def _integrity(found: Integrity) -> dict[str, Any]:
    return {
        "objection": found.objection,
        "removed": [_finding(f) for f in found.removed[:MAX_TESTS]],
        "skipped": [_finding(f) for f in found.skipped[:MAX_TESTS]],
        "moved": [{"from": m.old_id, "to": m.new_id} for m in found.moved[:MAX_TESTS]],
        "excused": [{"id": e.test_id, "why": e.why} for e in found.excused[:MAX_TESTS]],
        "config_changes": [line.render() for line in found.config[:MAX_LINES]],
        "incomplete": found.incomplete,
    }


def _finding(finding: Finding) -> dict[str, Any]:
    return {"id": finding.test_id, "lines": [line.render() for line in finding.lines[:MAX_LINES]]}


def _bounded(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."
