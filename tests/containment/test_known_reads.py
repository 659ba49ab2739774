"""Audited import-time reads (worker/insuite/known_reads.py): a preloaded library whose
import read the working directory, clock, sys.path, pid, randomness or HOME in an
audited statement is preloaded, and each warm fork then holds what a cold import would
have held. Real imports in real forks; the end-to-end test runs the libraries this
interpreter has installed (hypothesis, pytest-xdist, execnet) warm and cold."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.projects import project
from worker.containment.sandbox import Sandbox, warm_interpreter
from worker.containment.warm_rules import distributions_objection
from worker.insuite import known_reads, preload
from worker.insuite.known_reads import AGAIN, PYTHON, Again, KnownRead, covering
from worker.suite.run import SuiteRun, run_suite


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("known_")]:
        del sys.modules[name]


def here(module: str, statement: str, *reads: str, version: str = "") -> KnownRead:
    """An entry for a module of this test, as the standard library of this interpreter."""
    version = version or platform.python_version()
    return KnownRead(PYTHON, version, module, statement, frozenset(reads), AGAIN)


def write_module(directory: Path, source: str) -> str:
    name = f"known_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(source)
    return name


# -- which reads an entry covers -------------------------------------------------------


def test_an_entry_covers_only_its_module_statement_kind_and_version() -> None:
    entry = here("m", "X = os.getcwd()", "cwd")
    assert covering("cwd", "m", "X = os.getcwd()", [entry]) is entry
    assert covering("clock", "m", "X = os.getcwd()", [entry]) is None  # another kind
    assert covering("cwd", "other", "X = os.getcwd()", [entry]) is None
    assert covering("cwd", "m", "X = os.getcwd()  # changed", [entry]) is None
    stale = here("m", "X = os.getcwd()", "cwd", version="0.0.1")
    assert covering("cwd", "m", "X = os.getcwd()", [stale]) is None  # not the audited version
    missing = KnownRead("no-such-dist", "1.0", "m", "X = 1", frozenset({"cwd"}), AGAIN)
    assert covering("cwd", "m", "X = 1", [missing]) is None


def test_an_entry_that_loads_entry_points_covers_nothing_once_some_are_installed() -> None:
    def loading(group: str) -> KnownRead:
        return KnownRead(
            PYTHON, platform.python_version(), "m", "run()", frozenset({"sys.path"}),
            known_reads.NO_DISTRIBUTIONS, entry_point_group=group,
        )  # fmt: skip

    assert covering("sys.path", "m", "run()", [loading("testgate-none-installed")])
    assert covering("sys.path", "m", "run()", [loading("pytest11")]) is None  # plugins are


@pytest.mark.parametrize("statement", ["run()", "a = b = 1", "a.b = 1", "a, b = 1, 2"])
def test_only_a_single_assignment_to_a_name_can_be_made_again(
    module_dir: Path, statement: str
) -> None:
    name = write_module(module_dir, "a = b = 1\n")
    importlib.import_module(name)
    with pytest.raises(ValueError, match="single assignment"):
        Again(name, statement)


# -- making a statement again ----------------------------------------------------------


def test_a_statement_made_again_reads_the_new_state_and_reaches_every_name_for_it(
    module_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(module_dir, "import os, sys\nCWD = os.getcwd()\nPATH = list(sys.path)\n")
    user = write_module(module_dir, f"from {name} import CWD, PATH\n")
    original, user_module = importlib.import_module(name), importlib.import_module(user)
    path_list = original.PATH
    again_cwd, again_path = Again(name, "CWD = os.getcwd()"), Again(name, "PATH = list(sys.path)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.syspath_prepend(str(elsewhere))
    again_cwd()
    again_path()
    assert original.CWD == user_module.CWD == str(elsewhere)  # rebound in both modules
    assert original.PATH is path_list is user_module.PATH  # the list, updated in place
    assert path_list[0] == str(elsewhere) and path_list == sys.path


# -- the watch, with audited statements ------------------------------------------------


def test_an_import_whose_only_reads_are_audited_is_accepted_with_them(
    module_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(module_dir, "import os, time\nCWD = os.getcwd()\nAT = time.time()\n")
    table = (here(name, "CWD = os.getcwd()", "cwd"), here(name, "AT = time.time()", "clock"))
    monkeypatch.setattr(
        preload.known_reads, "KNOWN_READS", table
    )  # preload.py loads its own copy; the fork inherits it
    watched = preload._check_in_fork(name)
    assert watched.reason == ""
    assert watched.covered == [
        (name, "CWD = os.getcwd()", AGAIN),
        (name, "AT = time.time()", AGAIN),
    ]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("P = os.getpid()\n", "os.getpid"),
        ("import sys\nA = list(sys.argv)\n", "sys.argv"),
        ("C2 = os.getcwd()\n", "os.getcwd"),  # the same read in a statement not audited
        ("def f():\n    return os.getcwd()\nC3 = f()\n", "os.getcwd"),
        ("os.environ['X_KNOWN'] = '1'\n", "wrote the env"),
    ],
)
def test_one_read_outside_the_audited_statements_refuses_the_import(
    module_dir: Path, monkeypatch: pytest.MonkeyPatch, extra: str, says: str
) -> None:
    name = write_module(module_dir, f"import os\nCWD = os.getcwd()\n{extra}")
    monkeypatch.setattr(
        preload.known_reads, "KNOWN_READS", (here(name, "CWD = os.getcwd()", "cwd"),)
    )
    watched = preload._check_in_fork(name)
    assert says in watched.reason, watched.reason
    assert watched.covered == []


def test_a_read_the_entry_does_not_name_is_refused_even_in_its_statement(
    module_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(module_dir, "import os, time\nX = (os.getcwd(), time.time())\n")
    statement = "X = (os.getcwd(), time.time())"
    monkeypatch.setattr(preload.known_reads, "KNOWN_READS", (here(name, statement, "cwd"),))
    assert "time.time" in preload._check_in_fork(name).reason


def test_a_variable_read_only_where_a_fix_recomputes_it_need_not_match(
    module_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statement = 'H = os.path.expanduser("~")'
    name = write_module(module_dir, f"import os\n{statement}\n")
    fixing = KnownRead(
        PYTHON, platform.python_version(), name, statement, frozenset({"env:HOME"}),
        known_reads.SYSCONFIG_USERBASE,
    )  # fmt: skip
    monkeypatch.setattr(preload.known_reads, "KNOWN_READS", (fixing,))
    watched = preload._check_in_fork(name)
    assert watched.reason == "" and "HOME" not in watched.env_read
    assert watched.covered == [(name, statement, known_reads.SYSCONFIG_USERBASE)]
    # Read once more elsewhere, by name: its value must then match the run's again.
    other = write_module(module_dir, f"import os\n{statement}\nX = os.environ.get('HOME')\n")
    fixing_other = KnownRead(**{**vars(fixing), "module": other})
    monkeypatch.setattr(preload.known_reads, "KNOWN_READS", (fixing_other,))
    watched = preload._check_in_fork(other)
    assert watched.reason == "" and watched.env_read["HOME"] == os.environ["HOME"]
    assert watched.covered == []


# -- the condition a listing of distributions needs ------------------------------------


def test_distribution_metadata_on_the_suites_path_is_an_objection(tmp_path: Path) -> None:
    clean, planted = tmp_path / "clean", tmp_path / "planted"
    (clean / "pkg").mkdir(parents=True)
    (planted / "Evil-1.0.DIST-INFO").mkdir(parents=True)  # importlib lowercases names
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "evil.egg-info").write_text("")
    (tmp_path / "file.txt").write_text("")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert distributions_objection([str(clean), str(tmp_path / "absent")], cwd, []) is None
    assert "distribution metadata" in (distributions_objection([str(planted)], cwd, []) or "")
    assert "distribution metadata" in (
        distributions_objection([str(tmp_path / "old")], cwd, []) or ""
    )
    assert "not a directory" in (
        distributions_objection([str(tmp_path / "file.txt")], cwd, []) or ""
    )
    assert "may hold" in (distributions_objection([str(tmp_path / "x.zip")], cwd, []) or "")
    assert distributions_objection([], cwd, ["__editable__.hook"]) is None
    (cwd / "__editable__.hook").symlink_to(planted)  # even a dangling or linked name
    assert "relative sys.path entry" in (
        distributions_objection([], cwd, ["__editable__.hook"]) or ""
    )


# -- end to end: the libraries this interpreter has installed --------------------------

AUDITED = {entry.distribution: entry.version for entry in known_reads.KNOWN_READS}

DUMP = """
import json, os, sys, sysconfig

import execnet.gateway_base as gateway_base
import xdist.plugin
import xdist.workermanage
from hypothesis import configuration
from hypothesis.internal import observability, scrutineer
from hypothesis.internal.conjecture import engine


def test_dump_what_the_imports_read():
    with open(os.environ["DUMP_TO"], "w") as out:
        json.dump({
            "home_default": str(vars(configuration)["__hypothesis_home_directory_default"]),
            "cwd": os.getcwd(),
            "imported_at": observability._imported_at,
            "random_state": hash(engine._random.getstate()),
            "stdlib_dirs": sorted(map(str, scrutineer.STDLIB_DIRS)),
            "xdist_path": xdist.plugin._sys_path,
            "xdist_path_shared": xdist.workermanage._sys_path is xdist.plugin._sys_path,
            "execnet_pid": gateway_base.pid,
            "pid": os.getpid(),
            "userbase": sysconfig.get_config_var("userbase"),
            "home": os.environ["HOME"],
        }, out)
"""


def run_dump(root: Path, tmp_path: Path, *, warm: bool) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    out = tmp_path / f"dump-{run_id}.json"
    sandbox = Sandbox(
        scratch_dir=tmp_path / f"scratch-{run_id}",  # and so a HOME of its own
        cookie=uuid.uuid4().hex,
        kill_grace_s=0.5,
        warm=warm_interpreter() if warm else None,
        extra_env={"DUMP_TO": str(out)},
    )
    sandbox.scratch_dir.mkdir(exist_ok=True)
    result: SuiteRun = run_suite(
        root, sandbox, python=sys.executable, target="tests/", timeout_s=120
    )
    assert result.exit_code == 0, result.output_tail
    state: dict[str, Any] = json.loads(out.read_text())
    return state


def test_installed_libraries_with_audited_reads_run_warm_as_they_run_cold(
    tmp_path: Path,
) -> None:
    installed = {dist: known_reads.installed_version(dist) for dist in AUDITED}
    warm = warm_interpreter()
    assert warm._await_ready()
    if installed != AUDITED:  # another version: its reads are refused, as before
        assert "hypothesis" not in warm.plugins
        pytest.skip(f"installed {installed}, audited {AUDITED}: nothing to compare")
    assert {"hypothesis", "xdist.plugin"} <= set(warm.plugins)
    assert "HOME" not in warm.env_read and warm.env_read.get("CI") == "true"
    root = project(tmp_path, {"tests/test_dump.py": DUMP})
    cold = run_dump(root, tmp_path, warm=False)
    runs = []
    for _ in range(2):
        forks, asked_at = warm.forks, time.time()
        runs.append(run_dump(root, tmp_path, warm=True))
        assert warm.forks == forks + 1  # it really ran warm
        assert runs[-1]["imported_at"] >= asked_at  # the job's clock, not the zygote's
    for state in (cold, *runs):
        assert state["home_default"] == os.path.join(state["cwd"], ".hypothesis")
        assert state["execnet_pid"] == state["pid"]
        assert state["xdist_path_shared"]
        assert state["userbase"] == os.path.join(state["home"], ".local")
    first, second = runs
    assert first["random_state"] != second["random_state"]  # reseeded in each fork
    assert first["home"] != second["home"] != warm.env["HOME"]  # each run's user base its own
    for key in ("stdlib_dirs", "xdist_path", "home_default"):
        assert first[key] == cold[key], key


def test_a_suite_path_holding_distributions_runs_cold(tmp_path: Path) -> None:
    warm = warm_interpreter()
    assert warm._await_ready()
    if known_reads.NO_DISTRIBUTIONS not in warm.conditions:
        pytest.skip("no preloaded library lists the distributions at import")
    root = project(tmp_path, {"tests/test_dump.py": DUMP})
    info = root / "planted-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: planted\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[hypothesis]\nplanted = os:getpid\n")
    forks = warm.forks
    run_dump(root, tmp_path, warm=True)
    assert warm.forks == forks  # cold: its import would have loaded the planted entry point
