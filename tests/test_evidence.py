"""The evidence a PASS needs besides exit 0 (worker/evidence.py): pure checks."""

from __future__ import annotations

import json

import pytest

from worker.evidence import (
    SessionRecord,
    listed_failing_objection,
    objection,
    parse_session_records,
    required_objection,
    summary_objection,
)
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


GOOD_TAIL = "..s                                  [100%]\n2 passed, 1 skipped in 0.04s\n"


def test_one_agreeing_record_supports_a_pass() -> None:
    assert objection(records(line()), GOOD_TAIL) is None
    passed = with_evidence(from_exit_code(0), objection(records(line()), GOOD_TAIL))
    assert (passed.result, passed.outcome) == ("PASS", "code-pass")


@pytest.mark.parametrize(
    ("lines", "tail", "says"),
    [
        ((), GOOD_TAIL, "no record of a finished session"),
        ((line(nonce="forged" * 6),), GOOD_TAIL, "no record of a finished session"),
        ((line(finished=False),), GOOD_TAIL, "no record of a finished session"),
        ((line(), line()), GOOD_TAIL, "2 session records"),
        ((line(counts={"passed": 2, "failed": 1}),), GOOD_TAIL, "1 failed or erroring"),
        ((line(exitstatus=1),), GOOD_TAIL, "exit status for the session was 1"),
        ((line(collected=0, counts={}),), "no tests ran in 0.01s", "no test passed"),
        ((line(counts={"skipped": 3}),), GOOD_TAIL, "no test passed"),
        ((line(collected=5),), GOOD_TAIL, "5 test(s) were collected but only 3"),
        ((line(counts={"passed": 3, "weird": 1}, collected=4),), GOOD_TAIL, "unknown outcomes"),
        ((line(),), "F.s\n1 failed, 1 passed, 1 skipped in 0.1s", "summary line reports 1 failed"),
        ((line(),), "===== 2 passed, 1 error in 0.2s =====", "summary line reports 1 error"),
    ],
)
def test_missing_or_disagreeing_evidence_fails_an_exit_0_in_one_line(
    lines: tuple[str, ...], tail: str, says: str
) -> None:
    why = objection(records(*lines), tail)
    assert why is not None and says in why and "\n" not in why
    failed = with_evidence(from_exit_code(0), why)
    assert (failed.result, failed.outcome) == ("FAIL", "code-fail")
    assert says in failed.reason


def test_malformed_lines_and_wrong_types_are_not_evidence() -> None:
    garbage = ["{", "[]", line(exitstatus="0"), line(counts={"passed": True}), line(collected=1.5)]
    assert records(*garbage) == ()
    assert parse_session_records(line(), "") == ()  # no nonce: nothing counts


def test_xdist_collection_elsewhere_is_not_a_disagreement() -> None:
    assert objection(records(line(collected=None)), GOOD_TAIL) is None


def test_a_shard_may_pass_without_a_passing_test_of_its_own() -> None:
    only_skips = records(line(counts={"skipped": 3}))
    assert objection(only_skips, GOOD_TAIL) is not None
    assert objection(only_skips, GOOD_TAIL, require_a_pass=False) is None


def test_evidence_never_turns_a_fail_into_anything_else() -> None:
    failed = from_exit_code(1)
    assert with_evidence(failed, "anything") == failed
    assert with_evidence(failed, None) == failed


@pytest.mark.parametrize(
    ("tail", "says"),
    [
        ("2 passed in 0.01s", None),
        ("", None),  # a suite that silenced its terminal: the probe's record decides
        ("no tests ran in 0.01s", None),
        ("3 passed, 2 warnings, 20 subtests passed in 61.20s (0:01:01)", None),
        ("\x1b[31m1 failed\x1b[0m, \x1b[32m1 passed\x1b[0m in 0.03s", "1 failed"),
        ("1 passed, 1 subtests failed in 0.1s", "1 subtests failed"),
        ("=== 4 passed, 2 errors in 1.5s ===", "2 errors"),
        ("0 failed, 2 passed in 0.2s", None),
        # Only pytest's last summary line counts: a test's printout before it does not.
        ("captured: 1 failed in 0.1s\n2 passed in 0.3s", None),
        ("2 passed in 0.3s\n1 failed in 0.1s", "1 failed"),
    ],
)
def test_pytests_own_summary_line_is_a_second_witness(tail: str, says: str | None) -> None:
    why = summary_objection(tail)
    if says is None:
        assert why is None
    else:
        assert why is not None and why.endswith(f"reports {says}")


def test_every_required_test_must_have_passed_and_each_miss_is_named() -> None:
    seen = {"a": "passed", "b": "skipped", "c": "xfailed", "d": "failed"}
    assert required_objection(["a"], seen) is None
    found = required_objection(["a", "b", "c", "d", "e"], seen)
    assert found == (
        "4 required test(s) did not pass: b skipped; c xfailed; d failed; e was not run"
    )


def test_a_pass_never_lists_a_failing_test() -> None:
    assert listed_failing_objection(()) is None
    assert listed_failing_objection(("t.py::a", "t.py::b")) == (
        "the gate's probe recorded 2 failing test(s), first t.py::a"
    )


def test_the_framework_changes_the_probe_found_are_read_from_its_record() -> None:
    [record] = records(
        line(
            framework=[["pytest_runtest_makereport", "/w/calc.py"]],
            collect_skips=[["tests/test_a.py", "/w/calc.py"], "junk"],
        )
    )
    assert record.framework == (("pytest_runtest_makereport", "/w/calc.py"),)
    assert record.collect_skips == (("tests/test_a.py", "/w/calc.py"),)
    [plain] = records(line())
    assert plain.framework == ()
