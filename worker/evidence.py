"""The evidence a PASS needs besides exit status 0. Pure functions over plain data.

A suite controls its own exit status (`os._exit(0)`, a hook that sets
`session.exitstatus = 0`, `pytest.exit(returncode=0)`, a config that only collects or
prints help). So a PASS also needs the gate's own record of the session, written by the
in-suite probe (worker/insuite/plugins/testgate_probe.py) and tagged with the run's
nonce, to agree; and pytest's own summary line, a second witness that costs nothing
(the output is read anyway), must not report a failure or an error. Anything missing
or disagreeing is a FAIL of the code, and the report says which record disagreed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

OUTCOMES = frozenset({"passed", "failed", "skipped", "xfailed"})
MAX_RECORDS = 16  # a session writes one; more than a few is noise, not evidence


@dataclass(frozen=True)
class SessionRecord:
    """The probe's account of one pytest session."""

    exitstatus: int
    collected: int | None  # None when collection happened elsewhere (pytest-xdist)
    counts: Mapping[str, int] = field(default_factory=dict)  # final outcome -> tests
    # (what, where from): pieces of pytest's reporting path replaced, and reporting
    # hooks implemented outside pytest, as the probe found them at the session's end.
    framework: tuple[tuple[str, str], ...] = ()
    collect_skips: tuple[tuple[str, str], ...] = ()  # (collector, where its skip came from)

    @property
    def finished_tests(self) -> int:
        return sum(self.counts.values())

    def count(self, outcome: str) -> int:
        return self.counts.get(outcome, 0)


def parse_session_records(text: str, nonce: str) -> tuple[SessionRecord, ...]:
    """The records carrying `nonce`, in order; lines without it or malformed are not
    evidence (a forged line, a line cut short by a kill)."""
    if not nonce:
        return ()
    records: list[SessionRecord] = []
    for line in text.splitlines()[:MAX_RECORDS]:
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or data.get("nonce") != nonce:
                continue
            if data.get("finished") is not True:
                continue
            collected = data["collected"]
            records.append(
                SessionRecord(
                    exitstatus=_strict_int(data["exitstatus"]),
                    collected=None if collected is None else _strict_int(collected),
                    counts={str(k): _strict_int(v) for k, v in dict(data["counts"]).items()},
                    framework=_pairs(data.get("framework")),
                    collect_skips=_pairs(data.get("collect_skips")),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return tuple(records)


def objection(
    records: tuple[SessionRecord, ...], output_tail: str = "", *, require_a_pass: bool = True
) -> str | None:
    """Why the records do not support a PASS, in one line; None when they do. A shard
    may pass without a passing test of its own (`require_a_pass=False`): the merge asks
    for one over all shards."""
    if not records:
        return (
            "the gate's probe has no record of a finished session (the session did not "
            "finish, or the probe was disabled or bypassed)"
        )
    if len(records) > 1:
        return f"the gate's probe has {len(records)} session records for one run, not one"
    record = records[0]
    unknown = sorted(set(record.counts) - OUTCOMES)
    if unknown:
        return f"the gate's probe recorded unknown outcomes {unknown}"
    if record.count("failed"):
        return f"the gate's probe counted {record.count('failed')} failed or erroring test(s)"
    if record.exitstatus != 0:
        return f"pytest's own exit status for the session was {record.exitstatus}"
    if require_a_pass and record.count("passed") == 0:
        return "no test passed: none ran, or every one was skipped"
    if record.collected is not None and record.finished_tests != record.collected:
        return (
            f"{record.collected} test(s) were collected but only {record.finished_tests} "
            "reached an outcome"
        )
    return summary_objection(output_tail)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# pytest's last line: "1 failed, 3 passed, 2 warnings in 0.52s" (between "=" rules
# without -q; "in 61.20s (0:01:01)" past a minute).
_SUMMARY = re.compile(
    r"^=*\s*(?P<counts>\d+ [a-z ]+(?:, \d+ [a-z ]+)*) in [\d.]+s(?: \([\d:]+\))?\s*=*$"
)
_BAD_WORDS = ("failed", "error", "errors")


def summary_objection(output_tail: str) -> str | None:
    """Why pytest's own last summary line in the output contradicts a PASS: it reports
    failed tests or errors. None when it reports none, or when there is no such line
    (a suite may silence its terminal; the probe's record still decides)."""
    for line in reversed(_ANSI.sub("", output_tail).splitlines()):
        found = _SUMMARY.match(line.strip())
        if found is None:
            continue
        bad = [
            f"{number} {words}"
            for number, words in re.findall(r"(\d+) ([a-z ]+)", found["counts"])
            if int(number) > 0 and words.strip().split()[-1] in _BAD_WORDS
        ]
        return f"pytest's own summary line reports {', '.join(bad)}" if bad else None
    return None


def _pairs(value: object) -> tuple[tuple[str, str], ...]:
    """A list of two-item lists, as strings; anything else is no entry."""
    if not isinstance(value, list):
        return ()
    return tuple((str(p[0]), str(p[1])) for p in value if isinstance(p, list) and len(p) == 2)


def _strict_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an int: {value!r}")
    return value


def required_objection(required: Sequence[str], seen: Mapping[str, str]) -> str | None:
    """Why the required tests did not all pass in the deciding run (`seen`: test id ->
    outcome): each must have been collected and passed (not skipped, xfailed, failed or
    missing)."""
    missed = [f"{t} {seen.get(t, 'was not run')}" for t in required if seen.get(t) != "passed"]
    if not missed:
        return None
    shown = "; ".join(missed[:10]) + (f"; and {len(missed) - 10} more" if len(missed) > 10 else "")
    return f"{len(missed)} required test(s) did not pass: {shown}"


def listed_failing_objection(failing: Sequence[str]) -> str | None:
    """A PASS never lists a failing test: the probe's outcome lines must agree too."""
    if not failing:
        return None
    return f"the gate's probe recorded {len(failing)} failing test(s), first {failing[0]}"
