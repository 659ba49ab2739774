"""The evidence a PASS needs besides exit 0 (worker/evidence.py): pure checks."""

from __future__ import annotations

import json

import pytest

from worker.evidence import JunitCounts, SessionRecord, objection, parse_session_records
from worker.verdict import from_exit_code, with_evidence

NONCE = "a" * 32


def line(nonce: str = NONCE, **changes: object) -> str:
    record: dict[str, object] = {
        "nonce": nonce,
        "finished": True,
        "exitstatus": 0,
        "collected": 3,
        "counts": {"passed": 2, "skipped": 1},
    }
    record.update(changes)
    return json.dumps(record)


def records(*lines: str) -> tuple[SessionRecord, ...]:
    return parse_session_records("\n".join(lines), NONCE)


GOOD_JUNIT = JunitCounts(tests=3, failing=0)


def test_one_agreeing_record_supports_a_pass() -> None:
    assert objection(records(line()), GOOD_JUNIT) is None
    passed = with_evidence(from_exit_code(0), objection(records(line()), GOOD_JUNIT))
    assert (passed.result, passed.outcome) == ("PASS", "code-pass")


@pytest.mark.parametrize(
    ("lines", "junit", "says"),
    [
        ((), GOOD_JUNIT, "no record of a finished session"),
        ((line(nonce="forged" * 6),), GOOD_JUNIT, "no record of a finished session"),
        ((line(finished=False),), GOOD_JUNIT, "no record of a finished session"),
        ((line(), line()), GOOD_JUNIT, "2 session records"),
        ((line(counts={"passed": 2, "failed": 1}),), GOOD_JUNIT, "1 failed or erroring"),
        ((line(exitstatus=1),), GOOD_JUNIT, "exit status for the session was 1"),
        ((line(collected=0, counts={}),), JunitCounts(0, 0), "no test passed"),
        ((line(counts={"skipped": 3}),), GOOD_JUNIT, "no test passed"),
        ((line(collected=5),), GOOD_JUNIT, "5 test(s) were collected but only 3"),
        ((line(counts={"passed": 3, "weird": 1}, collected=4),), GOOD_JUNIT, "unknown outcomes"),
        ((line(),), None, "no readable JUnit XML"),
        ((line(),), JunitCounts(tests=3, failing=1), "lists 1 failing"),
        ((line(),), JunitCounts(tests=2, failing=0), "counts 2 test(s), the gate's probe 3"),
    ],
)
def test_missing_or_disagreeing_evidence_fails_an_exit_0_in_one_line(
    lines: tuple[str, ...], junit: JunitCounts | None, says: str
) -> None:
    why = objection(records(*lines), junit)
    assert why is not None and says in why and "\n" not in why
    failed = with_evidence(from_exit_code(0), why)
    assert (failed.result, failed.outcome) == ("FAIL", "code-fail")
    assert says in failed.reason


def test_malformed_lines_and_wrong_types_are_not_evidence() -> None:
    garbage = ["{", "[]", line(exitstatus="0"), line(counts={"passed": True}), line(collected=1.5)]
    assert records(*garbage) == ()
    assert parse_session_records(line(), "") == ()  # no nonce: nothing counts


def test_xdist_collection_elsewhere_is_not_a_disagreement() -> None:
    assert objection(records(line(collected=None)), GOOD_JUNIT) is None


def test_a_shard_may_pass_without_a_passing_test_of_its_own() -> None:
    only_skips = records(line(counts={"skipped": 3}))
    assert objection(only_skips, GOOD_JUNIT) is not None
    assert objection(only_skips, GOOD_JUNIT, require_a_pass=False) is None


def test_evidence_never_turns_a_fail_into_anything_else() -> None:
    failed = from_exit_code(1)
    assert with_evidence(failed, "anything") == failed
    assert with_evidence(failed, None) == failed
