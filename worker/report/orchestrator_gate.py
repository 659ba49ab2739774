"""A faithful copy of the orchestrator's gate (docs/contract.md §6), so tests can prove that every
report testgate writes is read back as the verdict it carries.

testgate never uses this to decide anything: the orchestrator evaluates its own gate.
"""

from __future__ import annotations

import re
from pathlib import Path

NEGATIVE_TOKENS = frozenset({"FAIL", "FAILED", "FAILURE", "ERROR", "BLOCKED", "REJECTED"})
POSITIVE_TOKENS = frozenset({"PASS", "PASSED", "APPROVED", "LGTM", "OK"})

_FIELD_LINE = re.compile(r"^\s*(verdict|status|result)\s*:\s*(.*?)\s*$", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z]+")


def frontmatter_lines(text: str) -> list[str]:
    """The lines between the opening `---` and the next `---`; [] if there is none."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return []
    for end, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return lines[1:end]
    return []


def parse_tests_verdict(text: str) -> bool | None:
    """True (passed), False (failed) or None (no verdict) from the frontmatter's
    `verdict:`, `status:` and `result:` fields. A negative token anywhere wins."""
    tokens: set[str] = set()
    for line in frontmatter_lines(text):
        match = _FIELD_LINE.match(line)
        if match:
            tokens.update(t.upper() for t in _TOKEN.findall(match.group(2)))
    if tokens & NEGATIVE_TOKENS:
        return False
    if tokens & POSITIVE_TOKENS:
        return True
    return None


def check_tests_passed(report: Path) -> bool:
    """True iff the report exists and the parser reads a pass from it."""
    try:
        text = report.read_text(encoding="utf-8")
    except OSError:
        return False
    return parse_tests_verdict(text) is True
