"""Per-repo contracts on real projects: src and flat layouts, `env`, `setup` steps."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from testkit.repofactory import make_origin, push_change, push_commit, show_file, write_files
from tests.gateworld import WorldFactory, job
from tests.projects import installable, outer_site_step
from worker.containment.sandbox import Sandbox
from worker.pipeline.runner import run_gate
from worker.report.orchestrator_gate import parse_tests_verdict
from worker.suite.setup import SetupFailure
from worker.suite.venvs import DEFAULT_KEY_FILES, ensure_venv, venv_key

SRC_LAYOUT = {
    "pyproject.toml": '[project]\nname = "pkg"\nversion = "0"\n',
    "src/pkg/__init__.py": "def answer():\n    return 42\n",
    "tests/test_pkg.py": (
        "from pkg import answer\n\n\ndef test_answer():\n    assert answer() == 42\n"
    ),
}
FLAT_LAYOUT = {
    "pkg/__init__.py": "def answer():\n    return 42\n",
    "tests/test_pkg.py": SRC_LAYOUT["tests/test_pkg.py"],
}
GENERATED = {
    "tests/test_gen.py": (
        "from generated import VALUE\n\n\ndef test_value():\n    assert VALUE == 42\n"
    ),
}
REPORT = "docs/work-items/WI-5/13-test-report.md"


def test_a_src_layout_project_passes_with_pythonpath_from_its_contract(world: WorldFactory) -> None:
    w = world({"srcpkg": {"smoke_enabled": False, "env": {"PYTHONPATH": "src"}}})
    make_origin(w.origins, "srcpkg", SRC_LAYOUT)
    result = run_gate(job("srcpkg"), w.ctx, attempt=0, delivery_id="d")
    assert result.advance is not None and result.advance.result == "PASS"


def test_the_same_src_layout_fails_without_it(world: WorldFactory) -> None:
    w = world({"srcpkg": {"smoke_enabled": False}})
    make_origin(w.origins, "srcpkg", SRC_LAYOUT)
    result = run_gate(job("srcpkg"), w.ctx, attempt=0, delivery_id="d")
    assert result.advance is not None
    assert (result.advance.result, result.advance.exit_code) == ("FAIL", 2)


def test_a_flat_layout_project_passes_as_is(world: WorldFactory) -> None:
    w = world({"flat": {"smoke_enabled": False}})
    make_origin(w.origins, "flat", FLAT_LAYOUT)
    result = run_gate(job("flat"), w.ctx, attempt=0, delivery_id="d")
    assert result.advance is not None and result.advance.result == "PASS"


def test_setup_steps_run_in_the_worktree_before_the_suite(world: WorldFactory) -> None:
    step = "python -c \"open('generated.py', 'w').write('VALUE = 42')\""
    w = world({"gen": {"smoke_enabled": False, "setup": [step]}})
    make_origin(w.origins, "gen", GENERATED)
    result = run_gate(job("gen"), w.ctx, attempt=0, delivery_id="d")
    assert result.advance is not None and result.advance.result == "PASS"


def test_a_failing_setup_step_is_an_infrastructure_outcome_that_names_the_step(
    world: WorldFactory,
) -> None:
    steps = ["python -c pass", "python -c \"import sys; print('no network'); sys.exit(3)\""]
    w = world({"gen": {"smoke_enabled": False, "setup": steps}})
    origin = make_origin(w.origins, "gen", GENERATED)
    first = run_gate(job("gen"), w.ctx, attempt=0, delivery_id="d")
    assert first.kind == "deferred"
    assert "setup step 2" in first.detail and "exited with 3" in first.detail
    final = run_gate(job("gen"), w.ctx, attempt=1, delivery_id="d")
    assert final.advance is not None
    assert (final.advance.result, final.advance.outcome) == ("FAIL", "tool-error")
    report = show_file(origin, "feature/x", REPORT)
    assert parse_tests_verdict(report) is False
    assert "setup step 2" in report and "never executed" in report
    assert "setup step 2" in w.alerts[0]


def builds(venvs_root: Path) -> dict[str, list[str]]:
    """Each venv's build log, as the setup step below writes it into the venv itself
    (the one place outside its worktree a contained setup step may write)."""
    return {
        venv.name: (venv / "builds.txt").read_text().splitlines()
        for venv in sorted(venvs_root.iterdir())
        if venv.is_dir()
    }


def test_a_cached_venv_is_built_once_per_set_of_dependency_files(
    tmp_path: Path, world: WorldFactory
) -> None:
    step = outer_site_step()
    venvs_root = tmp_path / "work" / "venvs"
    files = {
        "requirements.txt": "pytest\n",
        **FLAT_LAYOUT,
        "tests/test_venv.py": (
            "import os, sys\n\n\ndef test_runs_in_the_venv():\n"
            "    assert sys.prefix == os.environ['VIRTUAL_ENV']\n"
        ),
    }
    w = world({"cached": {"smoke_enabled": False, "venv": True, "setup": [step]}})
    origin = make_origin(w.origins, "cached", files)
    for task_id in (1, 2):
        result = run_gate(
            job("cached", task_id=task_id), w.ctx, attempt=0, delivery_id=f"d{task_id}"
        )
        assert result.advance is not None and result.advance.result == "PASS", result
    assert list(builds(venvs_root).values()) == [["built"]]
    push_commit(origin, "feature/x", {"requirements.txt": "pytest\nrequests\n"}, "new dep")
    result = run_gate(job("cached", task_id=3), w.ctx, attempt=0, delivery_id="d3")
    assert result.advance is not None and result.advance.result == "PASS"
    built = builds(venvs_root)
    assert list(built.values()) == [["built"], ["built"]]
    assert all(name.startswith("cached-") for name in built)


FLIP = (
    "import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\n"
    "def pytest_runtest_makereport(item, call):\n"
    "    report = (yield).get_result()\n"
    "    if report.failed:\n"
    "        report.outcome = 'passed'\n"
)
USES_IT = "import {0}\n\n\ndef test_it():\n    assert {0}.ANSWER == 41\n"


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_what_a_job_installs_of_its_own_lives_and_dies_with_it(
    tmp_path: Path, world: WorldFactory, warm: bool
) -> None:
    """`job_setup`'s editable install reaches the suite, never the cached venv: the next
    job of the same key gets its honest FAIL and the venv is built once."""
    contract = {
        "smoke_enabled": False,
        "venv": True,
        "setup": [outer_site_step()],
        "job_setup": ["python -m pip install -q --no-index -e ."],
    }
    w = world({"layered": contract}, warm_pytest=warm)
    flip = {**installable("flip", pytest_plugin=FLIP), "tests/test_it.py": USES_IT.format("flip")}
    origin = make_origin(w.origins, "layered", flip)
    first = run_gate(job("layered", task_id=1), w.ctx, attempt=0, delivery_id="d1")
    # Its own plugin and package, from its layer: its own failing test turns green.
    assert first.advance is not None and first.advance.result == "PASS", first
    honest = {**installable("honest"), "tests/test_it.py": USES_IT.format("honest")}

    def honest_branch(work: Path) -> None:
        shutil.rmtree(work / "src" / "flip")
        (work / "entry_points.txt").unlink()
        write_files(work, honest)

    push_change(origin, "feature/x", honest_branch, "honest")
    second = run_gate(job("layered", task_id=2), w.ctx, attempt=0, delivery_id="d2")
    assert second.advance is not None, second
    assert (second.advance.result, second.advance.exit_code) == ("FAIL", 1), second
    assert list(builds(tmp_path / "work" / "venvs").values()) == [["built"]]


def test_a_venv_whose_setup_fails_is_not_kept(tmp_path: Path, world: WorldFactory) -> None:
    w = world(
        {
            "broken": {
                "smoke_enabled": False,
                "venv": True,
                "setup": ['python -c "raise SystemExit(1)"'],
            }
        },
    )
    make_origin(w.origins, "broken", FLAT_LAYOUT)
    result = run_gate(job("broken"), w.ctx, attempt=0, delivery_id="d")
    assert result.kind == "deferred" and "setup step 1" in result.detail
    assert [p for p in (tmp_path / "work" / "venvs").iterdir() if p.is_dir()] == []


# --- the venv's key: dependency files as the branch made them --------------------------


def key_of(worktree: Path, *patterns: str) -> str:
    return venv_key(worktree, patterns or DEFAULT_KEY_FILES, "/usr/bin/python3")


def test_the_key_follows_a_link_only_to_a_file_of_the_worktree(tmp_path: Path) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "secret.txt"
    (tree / "requirements").mkdir(parents=True)
    outside.write_text("one\n")
    (tree / "requirements.txt").symlink_to(outside)
    before = key_of(tree)
    outside.write_text("two\n")
    assert key_of(tree) == before  # never read
    (tree / "requirements.txt").unlink()
    (tree / "requirements.txt").symlink_to("requirements/base.txt")
    (tree / "requirements/base.txt").write_text("pytest\n")
    inside = key_of(tree)
    (tree / "requirements/base.txt").write_text("pytest\nrequests\n")
    assert key_of(tree) not in (inside, before)


def test_a_linked_directory_of_key_files_is_not_read(tmp_path: Path) -> None:
    tree, elsewhere = tmp_path / "tree", tmp_path / "elsewhere"
    tree.mkdir()
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_text("one\n")
    (tree / "reqs").symlink_to(elsewhere)
    before = key_of(tree, "reqs/*.txt")
    (elsewhere / "a.txt").write_text("two\n")
    assert key_of(tree, "reqs/*.txt") == before


def test_a_fifo_for_a_dependency_file_is_no_dependency_file(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    empty = key_of(tree)
    os.mkfifo(tree / "requirements.txt")  # opening it for reading would block for ever
    assert key_of(tree) == empty


def test_a_dependency_file_too_large_to_be_one_fails_the_setup(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "requirements.txt").write_bytes(b"#" * (16 << 20) + b"\n")
    failure = ensure_venv(
        "huge",
        tree,
        Sandbox(scratch_dir=tmp_path / "scratch", cookie=uuid.uuid4().hex),
        root=tmp_path / "venvs",
        base_python=sys.executable,
        setup=(),
        timeout_s=10,
    )
    assert isinstance(failure, SetupFailure), failure
    assert "requirements.txt is larger than" in failure.describe()
    assert [p for p in (tmp_path / "venvs").iterdir() if p.is_dir()] == []


def test_a_dependency_file_that_links_to_itself_is_no_dependency_file(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "requirements.txt").symlink_to("requirements.txt")
    (tree / "requirements-a.txt").symlink_to("requirements-b.txt")
    (tree / "requirements-b.txt").symlink_to("requirements-a.txt")
    first = venv_key(tree, DEFAULT_KEY_FILES, "/usr/bin/python3")
    assert venv_key(tree, DEFAULT_KEY_FILES, "/usr/bin/python3") == first


def test_the_key_hashes_the_setup_steps(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    plain = venv_key(tree, DEFAULT_KEY_FILES, "/usr/bin/python3")
    assert venv_key(tree, DEFAULT_KEY_FILES, "/usr/bin/python3", ["python -m pip --version"]) != (
        plain
    )


def build(tmp_path: Path, tree: Path, setup: list[str]) -> Path | SetupFailure:
    return ensure_venv(
        "built",
        tree,
        Sandbox(scratch_dir=tmp_path / "scratch", cookie=uuid.uuid4().hex),
        root=tmp_path / "venvs",
        base_python=sys.executable,
        setup=setup,
        timeout_s=60,
    )


def test_the_build_sees_only_the_dependency_files_and_python_m_is_the_venvs(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "requirements.txt").write_text("pytest\n")
    (tree / "src" / "app.py").write_text("x = 1\n")
    (tree / "pip.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    (tmp_path / "scratch").mkdir()
    seen = "import os; assert sorted(os.listdir()) == ['requirements.txt'], os.listdir()"
    venv = build(tmp_path, tree, [f'python -c "{seen}"', "python -m pip --version"])
    assert isinstance(venv, Path), venv
    assert not (tmp_path / "ran").exists()  # the branch's pip.py never ran


def test_a_venv_holding_a_file_no_distribution_installed_is_discarded(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tmp_path / "scratch").mkdir()
    plant = "import site; open(site.getsitepackages()[0] + '/sitecustomize.py', 'w').close()"
    failure = build(tmp_path, tree, [f'python -c "{plant}"'])
    assert isinstance(failure, SetupFailure), failure
    assert "sitecustomize.py" in failure.describe()
    assert [p for p in (tmp_path / "venvs").iterdir() if p.is_dir()] == []
