from pathlib import Path

import pytest

from worker.report.orchestrator_gate import check_tests_passed, parse_tests_verdict


def fm(*lines: str) -> str:
    return "---\n" + "\n".join(lines) + "\n---\n\nbody\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (fm("result: PASS"), True),
        (fm("result: pass"), True),
        (fm("verdict: LGTM"), True),
        (fm("status: approved"), True),
        (fm("result: PASS", "status: success"), True),
        (fm("result: PASS", "status: failed"), False),
        (fm("result: FAIL", "status: success"), False),
        (fm("verdict: ok", "result: BLOCKED"), False),
        (fm("status: success"), None),
        (fm("work_item: PASS"), None),
        ("result: PASS\n", None),
        ("---\nresult: PASS\n", None),
        (fm("result: ERROR"), False),
        (fm("RESULT: Rejected"), False),
    ],
)
def test_parser_reads_verdict_status_and_result_with_negative_priority(
    text: str, expected: bool | None
) -> None:
    assert parse_tests_verdict(text) is expected


def test_fields_after_the_frontmatter_are_not_read() -> None:
    assert parse_tests_verdict(fm("status: success") + "result: PASS\n") is None


def test_check_tests_passed_needs_an_existing_passing_report(tmp_path: Path) -> None:
    report = tmp_path / "13-test-report.md"
    assert check_tests_passed(report) is False
    report.write_text(fm("result: FAIL"))
    assert check_tests_passed(report) is False
    report.write_text(fm("result: PASS", "status: success"))
    assert check_tests_passed(report) is True
