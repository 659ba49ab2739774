"""Shard plans and the merge of shard results (pure)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from worker.containment.sandbox import Sandbox
from worker.pipeline.shard_plan import (
    MAX_AUTO_SHARDS,
    ShardResult,
    TestCase,
    merge_shards,
    plan_shards,
    shard_count,
)
from worker.suite.run import run_suite, shard_targets

IDS = [f"tests/test_m.py::test_{i}" for i in range(10)]


@example(ids=["0", "00"], shards=2, timed={0: 0.0})  # a 0 s test once emptied a shard
@given(
    ids=st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=60),
    shards=st.integers(min_value=1, max_value=12),
    timed=st.dictionaries(st.integers(0, 59), st.floats(0, 100), max_size=60),
)
def test_every_test_is_in_exactly_one_shard_and_no_shard_is_empty(
    ids: list[str], shards: int, timed: dict[int, float]
) -> None:
    durations = {ids[i]: s for i, s in timed.items() if i < len(ids)}
    plan = plan_shards(ids, durations, shards)
    flat = [t for shard in plan for t in shard]
    assert sorted(flat) == sorted(ids)
    assert all(plan) and len(plan) == min(shards, len(ids)) if ids else plan == []


def test_known_durations_are_balanced_longest_first() -> None:
    durations = {IDS[0]: 9.0, IDS[1]: 5.0, IDS[2]: 4.0, IDS[3]: 3.0, IDS[4]: 1.0}
    plan = plan_shards(IDS[:5], durations, 2)
    loads = sorted(sum(durations[t] for t in shard) for shard in plan)
    assert loads == [10.0, 12.0]  # {9, 3} and {5, 4, 1}


def test_unknown_tests_are_dealt_round_robin_and_order_is_kept() -> None:
    plan = plan_shards(IDS, {}, 3)
    assert [len(s) for s in plan] == [4, 3, 3]
    assert all(shard == sorted(shard, key=IDS.index) for shard in plan)


def test_auto_asks_for_about_thirty_seconds_a_shard_within_bounds() -> None:
    assert shard_count("auto", IDS, {}) == 1  # ten unknown tests: ~10 s
    assert shard_count("auto", IDS, dict.fromkeys(IDS, 9.0)) == 3  # 90 s
    assert shard_count("auto", IDS, dict.fromkeys(IDS, 1000.0)) == MAX_AUTO_SHARDS
    assert shard_count(4, IDS[:2], {}) == 2
    assert shard_count(4, [], {}) == 1


def result(
    index: int, outcomes: dict[str, str], exit_code: int | None = 0, evidence: str = ""
) -> ShardResult:
    """A shard's result whose probe saw what `outcomes` says."""
    cases = {t: TestCase(o, 0.5) for t, o in outcomes.items()}
    passed = sum(o == "passed" for o in outcomes.values())
    return ShardResult(
        index,
        exit_code is not None,
        exit_code,
        1.0 + index,
        cases,
        evidence=evidence,
        passed=passed,
    )


def test_all_shards_passing_with_every_test_reported_is_a_pass() -> None:
    plan = [IDS[:2], IDS[2:4]]
    merged = merge_shards(
        plan,
        [result(1, dict.fromkeys(IDS[2:4], "passed")), result(0, dict.fromkeys(IDS[:2], "passed"))],
    )
    assert merged.verdict is not None and merged.verdict.result == "PASS"
    assert (merged.exit_code, merged.tests_total, merged.missing) == (0, 4, ())
    assert merged.wall_s == 2.0 and merged.durations[IDS[0]] == 0.5


def test_one_failing_shard_fails_the_job_and_names_its_tests() -> None:
    plan = [IDS[:2], IDS[2:4]]
    merged = merge_shards(
        plan,
        [
            result(0, dict.fromkeys(IDS[:2], "passed")),
            result(1, {IDS[2]: "passed", IDS[3]: "failed"}, exit_code=1),
        ],
    )
    assert merged.verdict is not None
    assert (merged.verdict.result, merged.verdict.outcome) == ("FAIL", "code-fail")
    assert "shard 2" in merged.verdict.reason and merged.failing == (IDS[3],)
    assert merged.exit_code == 1


def test_a_test_no_shard_reported_fails_the_job_even_if_every_shard_passed() -> None:
    plan = [IDS[:2], IDS[2:4]]
    merged = merge_shards(
        plan,
        [result(0, dict.fromkeys(IDS[:2], "passed")), result(1, {IDS[2]: "passed"})],
    )
    assert merged.verdict is not None and merged.verdict.result == "FAIL"
    assert merged.missing == (IDS[3],) and IDS[3] in merged.verdict.reason
    assert merged.exit_code == 1


def test_a_shard_that_did_not_run_leaves_no_code_verdict() -> None:
    plan = [IDS[:2], IDS[2:4]]
    hung = ShardResult(1, False, None, 8.0, problem="timed out after 8s and was killed")
    merged = merge_shards(plan, [result(0, dict.fromkeys(IDS[:2], "passed")), hung])
    assert merged.verdict is None and merged.exit_code is None
    assert merged.not_run == "shard 2/2: timed out after 8s and was killed"


def test_a_shard_result_survives_the_json_round_trip() -> None:
    original = result(3, {IDS[0]: "failed"}, exit_code=1)
    assert ShardResult.from_json(original.to_json()) == original


def test_a_selection_runs_only_its_ids_and_times_each(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_k.py").write_text(
        "import time\n\nimport pytest\n\n\n"
        "class TestK:\n"
        "    def test_slow(self):\n        time.sleep(0.3)\n\n"
        "    @pytest.mark.parametrize('n', [1, 2])\n"
        "    def test_p(self, n):\n        assert n == 1\n\n\n"
        "def test_not_selected():\n    pass\n"
    )
    sandbox = Sandbox(scratch_dir=tmp_path / "scratch", cookie=uuid.uuid4().hex)
    sandbox.scratch_dir.mkdir()
    chosen = {"tests/test_k.py::TestK::test_slow", "tests/test_k.py::TestK::test_p[2]"}
    suite = run_suite(
        root, sandbox, python=sys.executable, target="tests/", timeout_s=60, select=chosen
    )
    assert suite.exit_code == 1
    outcomes = {o.test_id: o for o in suite.outcomes}
    assert set(outcomes) == chosen
    assert outcomes["tests/test_k.py::TestK::test_p[2]"].outcome == "failed"
    assert outcomes["tests/test_k.py::TestK::test_slow"].seconds >= 0.3


def test_a_shard_imports_only_the_files_that_hold_its_tests(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    for name in ("a", "b"):
        (root / "tests" / f"test_{name}.py").write_text(
            f"open({str(tmp_path / name)!r}, 'w').close()  # proof of import\n\n\n"
            f"def test_{name}():\n    pass\n"
        )
    sandbox = Sandbox(scratch_dir=tmp_path / "scratch", cookie=uuid.uuid4().hex)
    sandbox.scratch_dir.mkdir()
    chosen = {"tests/test_a.py::test_a"}
    suite = run_suite(
        root, sandbox, python=sys.executable, target="tests/", timeout_s=60, select=chosen
    )
    assert suite.exit_code == 0 and {o.test_id for o in suite.outcomes} == chosen
    assert "tests/test_a.py" in suite.command and "tests/" not in suite.command
    assert (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_shard_targets_fall_back_to_the_target_unless_every_id_names_a_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    ids = {"tests/test_a.py::test_x", "tests/test_a.py::T::test_y[1-::]"}
    assert shard_targets(tmp_path, "tests/", ids) == ["tests/test_a.py"]
    assert shard_targets(tmp_path, "tests/", None) == ["tests/"]
    # Ids relative to another rootdir do not name files here: the whole target then.
    assert shard_targets(tmp_path, "tests/", {"test_a.py::test_x"}) == ["tests/"]


def test_equally_timed_tests_go_to_shards_of_consecutive_tests() -> None:
    ids = [f"tests/test_f{f:02}.py::test_{i}" for f in range(20) for i in range(20)]
    durations = {t: 0.05 + (hash(t) % 7) * 1e-4 for t in ids}  # timing noise
    plan = plan_shards(ids, durations, 8)
    loads = [sum(durations[t] for t in shard) for shard in plan]
    assert max(loads) <= sum(loads) / 8 + max(durations.values())  # within one test
    assert [t for shard in plan for t in shard] == ids  # each shard a run of the order
    assert max(len({t.split("::")[0] for t in shard}) for shard in plan) <= 4  # not 20


def test_a_shard_that_exited_0_without_evidence_fails_the_merge() -> None:
    plan = [IDS[:2], IDS[2:4]]
    forged = result(1, dict.fromkeys(IDS[2:4], "passed"), evidence="no session record")
    merged = merge_shards(plan, [result(0, dict.fromkeys(IDS[:2], "passed")), forged])
    assert merged.verdict is not None
    assert (merged.verdict.result, merged.verdict.outcome) == ("FAIL", "code-fail")
    assert "shard 2 exited 0, but no session record" in merged.verdict.reason


def test_shards_that_only_skipped_fail_and_one_skipping_shard_among_passing_ones_passes() -> None:
    plan = [IDS[:2], IDS[2:4]]
    skipped_only = [
        result(0, dict.fromkeys(IDS[:2], "skipped")),
        result(1, dict.fromkeys(IDS[2:4], "skipped")),
    ]
    verdict = merge_shards(plan, skipped_only).verdict
    assert verdict is not None and verdict.result == "FAIL"
    assert "no test passed" in verdict.reason
    mixed = [
        result(0, dict.fromkeys(IDS[:2], "skipped")),
        result(1, dict.fromkeys(IDS[2:4], "passed")),
    ]
    verdict = merge_shards(plan, mixed).verdict
    assert verdict is not None and verdict.result == "PASS"
