"""Which tests run first: what failed on the branch's last run, kept bounded."""

from __future__ import annotations

from worker.pipeline.failed_first import MAX_ID_CHARS, MAX_KEPT, still_failing


def test_the_failing_list_keeps_what_did_not_run_and_drops_what_passed() -> None:
    previous = ["a", "b", "c"]
    outcomes = {"a": "passed", "b": "failed", "d": "error", "e": "passed"}
    assert still_failing(previous, outcomes) == ["b", "c", "d"]
    assert still_failing([], {"x": "skipped"}) == []


def test_a_flood_of_failing_ids_is_kept_bounded() -> None:
    flood = {f"tests/test_a.py::test_{i:05d}": "failed" for i in range(5000)}
    flood["tests/test_a.py::test_" + "x" * 2000] = "failed"
    kept = still_failing([], flood)
    assert len(kept) == MAX_KEPT and all(len(t) <= MAX_ID_CHARS for t in kept)
    assert kept[0] == "tests/test_a.py::test_00000"
