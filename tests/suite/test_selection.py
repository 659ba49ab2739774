"""A selection of test ids (a shard's batch): only those run, and only the files that
hold them are imported."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from worker.containment.sandbox import Sandbox
from worker.suite.run import run_suite


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
    # Pointed at the target, not at the files (pytest lists a directory once per file
    # argument): the probe leaves the other files uncollected.
    assert "tests/" in suite.command and "tests/test_a.py" not in suite.command
    assert (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_selection_keeps_conftests_and_runs_nothing_it_cannot_name(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "tests" / "sub").mkdir(parents=True)
    (root / "tests" / "sub" / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.fixture\ndef given():\n    return 3\n"
    )
    (root / "tests" / "sub" / "test_c.py").write_text("def test_c(given):\n    assert given == 3\n")
    (root / "tests" / "test_d.py").write_text("def test_d():\n    assert False\n")
    sandbox = Sandbox(scratch_dir=tmp_path / "scratch", cookie=uuid.uuid4().hex)
    sandbox.scratch_dir.mkdir()
    kept = run_suite(
        root,
        sandbox,
        python=sys.executable,
        target="tests/",
        timeout_s=60,
        select={"tests/sub/test_c.py::test_c"},
    )
    assert kept.exit_code == 0 and [o.test_id for o in kept.outcomes] == [
        "tests/sub/test_c.py::test_c"
    ]
    # An id of another rootdir names no file here: everything is collected, nothing runs.
    foreign = run_suite(
        root, sandbox, python=sys.executable, target="tests/", timeout_s=60, select={"x.py::t"}
    )
    assert foreign.exit_code == 5 and foreign.outcomes == ()
