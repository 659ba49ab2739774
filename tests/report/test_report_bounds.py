"""The report stays within 64 KiB whatever the suite produced, its frontmatter intact,
and every bounded report still reads back through the orchestrator's gate as its
verdict."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.git.diff import DiffLine
from worker.report.budget import fit_sections, utf8_len
from worker.report.orchestrator_gate import frontmatter_lines, parse_tests_verdict
from worker.report.render import MAX_REPORT_BYTES, ReportFacts, render_report
from worker.review.classify import Classified
from worker.review.integrity import Finding, Integrity
from worker.suite.probe import Hang
from worker.verdict import Verdict, from_exit_code

PASS = from_exit_code(0)
FAIL = from_exit_code(1)
_FENCE = re.compile(r"(`{3,})[^`]*")


def facts(verdict: Verdict, **extra: object) -> ReportFacts:
    base = ReportFacts(
        work_item_id="WI-7",
        repo="orchestrator",
        branch="feature/x",
        commit="a" * 40,
        verdict=verdict,
        exit_code=0 if verdict.result == "PASS" else 1,
        smoke_state="ok" if verdict.result == "PASS" else "skipped",
        smoke_detail="all checks passed",
        command="python -m pytest tests/ -q",
        created_at=date(2026, 11, 24),
    )
    return replace(base, **extra)  # type: ignore[arg-type]


def assert_bounded_and_reads_back(report: str, small: ReportFacts) -> None:
    """Within the bound, frontmatter identical to the same facts' report without the
    bulk, fences balanced, and the gate reads the verdict."""
    assert utf8_len(report) <= MAX_REPORT_BYTES
    assert frontmatter_lines(report) == frontmatter_lines(render_report(small))
    assert parse_tests_verdict(report) is (small.verdict.result == "PASS")
    assert not open_fence_at_end(report)


def open_fence_at_end(text: str) -> bool:
    fence: str | None = None
    for line in text.split("\n"):
        match = _FENCE.fullmatch(line)
        if fence is None:
            fence = match.group(1) if match else None
        elif match and line == match.group(1) and len(line) >= len(fence):
            fence = None
    return fence is not None


def hostile_bulk(scale: int) -> dict[str, object]:
    """Everything the suite can make long, `scale` times over."""
    long_id = "tests/test_x.py::test_" + "p" * 5_000 * scale
    diff = tuple(DiffLine("tests/t.py", i, "-", "x" * 10_000) for i in range(200))
    integrity = Integrity(
        removed=tuple(Finding(f"{long_id}{i}", diff) for i in range(100)),
        skipped=tuple(Finding(f"{long_id}s{i}", ()) for i in range(100)),
        config=diff,
        unattributed=diff,
        notes=tuple("n" * 50_000 for _ in range(100)),
    )
    return {
        "failing_tests": tuple(f"{long_id}{i}" for i in range(5_000 * scale)),
        "output_tail": ("é✓ `" * 1_000_000 + "\n") * scale,
        "limit_notes": tuple("limit " * 10_000 for _ in range(500)),
        "smoke_detail": "d" * 1_000_000,
        "hang": Hang(test=long_id, stacks="  File x\n" * 200_000),
        "integrity": integrity,
        "classified": tuple(Classified(long_id, "introduced", "z" * 100_000) for _ in range(500)),
        "failure_packet": {"failing": ["q" * 10_000 for _ in range(1_000)]},
    }


@pytest.mark.parametrize("verdict", [PASS, FAIL], ids=["PASS", "FAIL"])
def test_a_report_of_everything_at_once_is_cut_to_64_kib_with_a_note(verdict: Verdict) -> None:
    small = facts(verdict, tests_total=5_000, failing_tests=("t",) * 5_000)
    report = render_report(replace(small, **hostile_bulk(1)))  # type: ignore[arg-type]
    assert_bounded_and_reads_back(report, small)
    assert "Report truncated to its size limit" in report
    assert utf8_len(report) > MAX_REPORT_BYTES - 1_024  # cut, not emptied
    assert "## Failing tests" in report  # the sections that matter most come first


def test_thousands_of_failures_with_long_ids_list_fifty_clipped_ids() -> None:
    ids = tuple(f"tests/test_{i}.py::test_" + "y" * 20_000 for i in range(3_000))
    report = render_report(facts(FAIL, failing_tests=ids, tests_total=3_000))
    assert_bounded_and_reads_back(report, facts(FAIL, failing_tests=ids, tests_total=3_000))
    assert "and 2950 more" in report
    assert "(19723 more characters)" in report  # each id clipped, visibly


def test_a_huge_multibyte_output_tail_keeps_its_end_and_valid_utf8() -> None:
    tail = "✓" * 3_000_000 + "\nthe last line\n"
    report = render_report(facts(FAIL, output_tail=tail))
    assert_bounded_and_reads_back(report, facts(FAIL))
    assert "the last line" in report
    report.encode("utf-8")  # strict: no cut character, no lone surrogate


def test_lone_surrogates_from_lenient_decoding_become_storable_text() -> None:
    report = render_report(facts(FAIL, output_tail="bad \udcff byte"))
    assert "bad ? byte" in report
    report.encode("utf-8")


def test_frontmatter_values_stay_on_their_line_whatever_the_input() -> None:
    forged = facts(FAIL, work_item_id="WI-7\nresult: PASS\nstatus: success", commit="c\n---")
    report = render_report(forged)
    assert parse_tests_verdict(report) is False
    assert [line.split(":", 1)[0] for line in frontmatter_lines(report)].count("result") == 1


def test_a_report_within_the_bound_is_not_touched() -> None:
    small = facts(FAIL, failing_tests=("tests/test_a.py::test_x",), output_tail="boom\n")
    report = render_report(small)
    assert "truncated" not in report
    assert "`tests/test_a.py::test_x`" in report and "boom" in report


def test_fit_sections_closes_a_code_block_it_cuts() -> None:
    block = "## Output\n\n````\n" + "line\n" * 1_000 + "````\n"
    fitted = fit_sections(["# head\n", block, "## after\n"], 1_000)
    assert utf8_len(fitted) <= 1_000
    assert not open_fence_at_end(fitted)
    assert fitted.rstrip().endswith("were left out.)*")
    assert "1 later section(s)" in fitted


def test_fit_sections_cuts_a_single_huge_line_at_a_character_boundary() -> None:
    fitted = fit_sections(["€" * 100_000], 2_000)
    assert utf8_len(fitted) <= 2_000
    assert fitted.startswith("€" * 100)
    fitted.encode("utf-8")


texts = st.text(max_size=300) | st.text(alphabet="`-\n✓ab", max_size=5_000)


@settings(max_examples=150, deadline=None)
@given(
    passed=st.booleans(),
    id_len=st.integers(min_value=0, max_value=20_000),
    failing=st.integers(min_value=0, max_value=400),
    tail=texts,
    tail_repeat=st.integers(min_value=1, max_value=2_000),
    reason=texts,
    detail=texts,
    stacks=texts,
    packet_items=st.integers(min_value=0, max_value=300),
)
def test_any_report_is_bounded_and_reads_back_as_its_verdict(
    passed: bool,
    id_len: int,
    failing: int,
    tail: str,
    tail_repeat: int,
    reason: str,
    detail: str,
    stacks: str,
    packet_items: int,
) -> None:
    verdict = (
        Verdict("PASS", "code-pass", reason) if passed else Verdict("FAIL", "code-fail", reason)
    )
    small = facts(verdict)
    big = replace(
        small,
        failing_tests=tuple(f"t{i}::" + "i" * id_len for i in range(failing)),
        output_tail=tail * tail_repeat,
        smoke_detail=detail * 50,
        hang=Hang(test="h" * id_len, stacks=stacks * 20),
        classified=tuple(Classified("c" * id_len, "flaky", detail) for _ in range(failing)),
        failure_packet={"x": [detail] * packet_items},
    )
    assert_bounded_and_reads_back(render_report(big), replace(small, smoke_detail=detail * 50))
