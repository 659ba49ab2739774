import pytest

from worker.smoke import SmokeResult
from worker.verdict import describe_exit_code, from_exit_code, infrastructure_fail, with_smoke

OK = SmokeResult("ok", "fine")
FAILED = SmokeResult("failed", "GET /queue: HTTP 500, expected 200")
SKIPPED = SmokeResult("skipped", "disabled")


def test_only_exit_code_zero_passes() -> None:
    verdict = from_exit_code(0)
    assert (verdict.result, verdict.outcome, verdict.status) == ("PASS", "code-pass", "success")


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5, 137, -9, None, "0", 0.0, True, False])
def test_anything_but_the_integer_zero_fails_closed(code: object) -> None:
    verdict = from_exit_code(code)
    assert (verdict.result, verdict.outcome, verdict.status) == ("FAIL", "code-fail", "failed")


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (2, "interrupted"),
        (3, "internal error"),
        (4, "usage error"),
        (5, "no tests were collected"),
        (-9, "SIGKILL"),
        (-15, "SIGTERM"),
        (77, "does not define"),
    ],
)
def test_the_reason_names_what_the_exit_code_means(code: int, words: str) -> None:
    assert words in describe_exit_code(code)
    assert words in from_exit_code(code).reason


def test_a_failed_smoke_turns_a_green_suite_into_a_code_fail() -> None:
    verdict = with_smoke(from_exit_code(0), FAILED)
    assert (verdict.result, verdict.outcome) == ("FAIL", "code-fail")
    assert "HTTP 500" in verdict.reason


@pytest.mark.parametrize("smoke", [OK, SKIPPED])
def test_a_green_suite_with_ok_or_skipped_smoke_passes(smoke: SmokeResult) -> None:
    assert with_smoke(from_exit_code(0), smoke).result == "PASS"


def test_a_red_suite_stays_red_whatever_the_smoke() -> None:
    assert with_smoke(from_exit_code(1), OK).result == "FAIL"


def test_an_infrastructure_fail_says_it_was_not_the_code() -> None:
    verdict = infrastructure_fail("timed out after 3s and was killed", 3)
    assert (verdict.result, verdict.outcome) == ("FAIL", "tool-error")
    assert "infrastructure, not a code defect" in verdict.reason
    assert "3 attempt" in verdict.reason
