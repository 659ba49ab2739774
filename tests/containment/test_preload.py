"""Preloading installed pytest plugins in a warm interpreter (worker/insuite/preload.py):
an import that reads anything a cold start would give it differently is seen and the
plugin is left to each run; one that reads nothing is preloaded, and a run with it is
what a cold run is. Real imports in real forks; real venvs with plugin distributions."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.projects import project
from worker.containment.sandbox import Sandbox, warm_interpreter
from worker.containment.warm_rules import preload_objection
from worker.insuite import preload
from worker.suite.run import SuiteRun, run_suite
from worker.suite.venvs import in_venv
from worker.verdict import from_exit_code, with_evidence

# What an import may do that a warm start would see otherwise -> what the check says.
UNCLEAN = {
    "the whole environment": ("import os\nD = dict(os.environ)\n", "whole environment"),
    "an environment write": ("import os\nos.environ['PRELOAD_W'] = '1'\n", "wrote the env"),
    "a setdefault in the environment": (
        "import os\nos.environ.setdefault('PRELOAD_W', '1')\n",
        "wrote the env",
    ),
    "putenv": ("import os\nos.putenv('PRELOAD_W', '1')\n", "os.putenv"),
    "the working directory": ("import os\nC = os.getcwd()\n", "os.getcwd"),
    "a relative path resolved": ("import os.path\nP = os.path.abspath('x')\n", "os.getcwd"),
    "a relative directory listed": ("import os\nL = os.listdir('.')\n", "working directory"),
    "a relative file opened": (
        "try:\n    open('setup.cfg')\nexcept OSError:\n    pass\n",
        "working directory",
    ),
    "argv": ("import sys\nA = list(sys.argv)\n", "sys.argv"),
    "sys.path copied": ("import sys\nP = list(sys.path)\n", "sys.path"),
    "sys.path searched": ("import sys\nX = '/x' in sys.path\n", "sys.path"),
    "the wall clock": ("import time\nT = time.time()\n", "time.time"),
    "a monotonic start time": ("import time\nT = time.monotonic()\n", "time.monotonic"),
    "today's date": ("import datetime\nD = datetime.date.today()\n", "date.today"),
    "datetime.now": ("from datetime import datetime\nN = datetime.now()\n", "datetime.now"),
    "strftime of now": ("import time\nS = time.strftime('%Y')\n", "time.strftime"),
    "its pid": ("import os\nP = os.getpid()\n", "os.getpid"),
    "a system-seeded Random": ("import random\nR = random.Random()\n", "seeded a Random"),
    "a uuid4": ("import uuid\nU = uuid.uuid4()\n", "os.urandom"),
    "a thread": (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3,), daemon=True).start()\n",
        "started a thread",
    ),
    "a print": ("print('hello')\n", "stdout or stderr"),
    "a write to stderr": ("import os\nos.write(2, b'x')\n", "stdout or stderr"),
    "a warning": ("import warnings\nwarnings.warn('careful')\n", "warned"),
    "an error": ("raise RuntimeError('broken plugin')\n", "raised"),
}

CLEAN = {
    "constants": "X = 1\n",
    "a pure computation": "import math\nX = math.sqrt(2)\nDATE = __import__('time').gmtime(0)\n",
    "a fixed Random seed": "import random\nR = random.Random(42)\n",
    "hooks that read the environment only when called": (
        "import os\n\n\ndef pytest_configure(config):\n    os.environ.get('X')\n"
    ),
}


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))


def check(directory: Path, source: str) -> tuple[str, dict[str, str | None]]:
    name = f"plug_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(source)
    watched = preload._check_in_fork(name)
    assert watched.covered == []  # none of these modules' statements was audited
    return watched.reason, watched.env_read


@pytest.mark.parametrize("case", sorted(UNCLEAN))
def test_an_import_that_reads_what_a_warm_start_changes_is_refused(
    module_dir: Path, case: str
) -> None:
    source, says = UNCLEAN[case]
    reason, _ = check(module_dir, source)
    assert says in reason, reason


@pytest.mark.parametrize("case", sorted(CLEAN))
def test_an_import_that_reads_nothing_of_the_run_is_accepted(module_dir: Path, case: str) -> None:
    assert check(module_dir, CLEAN[case]) == ("", {})


class _ReadsPidWhenCollected:
    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        os.getpid()


def test_garbage_made_before_the_import_is_not_counted_as_its_reads(module_dir: Path) -> None:
    # A cycle whose finalizer asks for the pid, left uncollected, then an import that
    # collects: the read is the finalizer's, made before the import, not the import's.
    gc.disable()
    try:
        _ReadsPidWhenCollected()
        assert check(module_dir, "import gc\ngc.collect()\n") == ("", {})
    finally:
        gc.enable()
        gc.collect()


def test_environment_reads_by_name_are_reported_with_the_values_seen(
    module_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRELOAD_SET", "yes")
    monkeypatch.delenv("PRELOAD_UNSET", raising=False)
    source = (
        "import os\n"
        "A = os.environ.get('PRELOAD_SET')\n"
        "B = os.getenv('PRELOAD_UNSET', 'default')\n"
        "C = 'PRELOAD_SET' in os.environ\n"
    )
    assert check(module_dir, source) == ("", {"PRELOAD_SET": "yes", "PRELOAD_UNSET": None})


def test_the_check_leaves_this_process_as_it_was(module_dir: Path) -> None:
    before_env, before_path = dict(__import__("os").environ), list(sys.path)
    reason, _ = check(module_dir, UNCLEAN["an environment write"][0])
    assert reason
    assert dict(__import__("os").environ) == before_env and sys.path == before_path
    assert not any(name.startswith("plug_") for name in sys.modules)


def test_a_run_whose_environment_or_options_differ_from_the_imports_goes_cold(
    tmp_path: Path,
) -> None:
    read = {"PLUG_MODE": None}
    assert preload_objection(read, {}, ["-q"], tmp_path) is None
    assert "PLUG_MODE" in (preload_objection(read, {"PLUG_MODE": "x"}, [], tmp_path) or "")
    assert "--assert" in (preload_objection({}, {}, ["--assert=plain"], tmp_path) or "")
    assert preload_objection({}, {}, ["--collect-only", "--assert=plain"], tmp_path) is None
    assert "--assert" in (
        preload_objection({}, {"PYTEST_ADDOPTS": "--assert=plain"}, [], tmp_path) or ""
    )
    (tmp_path / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\nenable_assertion_pass_hook = true\n"
    )
    assert "enable_assertion_pass_hook" in (preload_objection({}, {}, [], tmp_path) or "")


@pytest.mark.timeout(30)  # a FIFO opened for reading would block until then
@pytest.mark.parametrize("plant", ["fifo", "link to /dev/zero", "link to a real file", "huge"])
def test_a_planted_pytest_config_is_never_opened_and_sends_the_run_cold(
    tmp_path: Path, plant: str
) -> None:
    config = tmp_path / "pytest.ini"
    if plant == "fifo":
        os.mkfifo(config)
    elif plant == "link to /dev/zero":
        config.symlink_to("/dev/zero")
    elif plant == "link to a real file":
        (tmp_path / "real.ini").write_text("[pytest]\nenable_assertion_pass_hook = true\n")
        config.symlink_to(tmp_path / "real.ini")
    else:
        with config.open("wb") as out:
            out.truncate(2 * 1024 * 1024)
    why = preload_objection({}, {}, ["-q"], tmp_path)
    assert why is not None and "pytest.ini is not a regular file" in why


# Three plugin distributions installed in a venv: one that imports cleanly, one that
# reads the environment by name at import, one that keeps the working directory.
PLUGINS = {
    "cleanplug": """
        import os

        import pytest

        CONFIGURED_WITH = []


        def pytest_configure(config):
            CONFIGURED_WITH.append(os.environ.get("CLEANPLUG"))


        @pytest.fixture
        def cleanplug_seen():
            return CONFIGURED_WITH
        """,
    "envplug": """
        import os

        import pytest

        VALUE = os.environ.get("ENVPLUG")


        @pytest.fixture
        def envplug_value():
            return VALUE
        """,
    "cwdplug": """
        import os

        import pytest

        CWD = os.getcwd()


        @pytest.fixture
        def cwdplug_cwd():
            return CWD
        """,
}

SUITE = """
import os
import sys

import cleanplug


def test_the_plugins_saw_this_run(cleanplug_seen, envplug_value, cwdplug_cwd):
    assert cleanplug_seen == [os.environ.get("CLEANPLUG")]
    assert envplug_value == os.environ.get("ENVPLUG")
    assert cwdplug_cwd == os.getcwd()
    loader = type(cleanplug.__loader__).__name__
    with open(os.environ["DUMP_TO"], "w") as out:
        out.write(repr(sorted(m for m in sys.modules if m.endswith("plug"))) + " " + loader)
"""


def plugin_venv(root: Path) -> Path:
    """A venv that sees this interpreter's packages (pytest) and has the three plugins
    installed as distributions with pytest11 entry points."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "this-interpreter.pth").write_text(str(Path(pytest.__file__).parent.parent) + "\n")
    for name, source in PLUGINS.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[pytest11]\n{name} = {name}\n")
        (info / "RECORD").write_text(f"{name}.py,,\n{name}-1.0.dist-info/METADATA,,\n")
    return venv


def run(
    root: Path, venv: Path, tmp_path: Path, *, warm: bool, env: dict[str, str], preload: bool = True
) -> SuiteRun:
    python = str(venv / "bin" / "python")
    sandbox = Sandbox(
        scratch_dir=tmp_path / "scratch",
        cookie=uuid.uuid4().hex,
        kill_grace_s=0.5,
        warm=warm_interpreter(python, preload=preload) if warm else None,
        extra_env=env,
    )
    sandbox = in_venv(sandbox, venv)
    sandbox.scratch_dir.mkdir(exist_ok=True)
    return run_suite(root, sandbox, python=python, target="tests/", timeout_s=60)


def test_a_preloaded_plugin_runs_as_a_cold_one_and_unclean_ones_load_in_the_run(
    tmp_path: Path,
) -> None:
    venv = plugin_venv(tmp_path)
    root = project(
        tmp_path / "p",
        {"tests/test_plugins.py": SUITE, "pytest.ini": "[pytest]\nfilterwarnings =\n    error\n"},
    )
    warm = warm_interpreter(str(venv / "bin" / "python"))
    assert warm._await_ready()
    assert "cleanplug" in warm.plugins and "envplug" in warm.plugins
    assert "cwdplug" not in warm.plugins  # it keeps the working directory of its import
    assert warm.env_read.get("ENVPLUG", "unread") is None
    seen = {}
    for how in ("cold", "warm"):
        out = tmp_path / f"{how}.txt"
        env = {"DUMP_TO": str(out), "CLEANPLUG": "job"}
        forks = warm.forks
        result = run(root, venv, tmp_path, warm=how == "warm", env=env)
        decided = with_evidence(from_exit_code(result.exit_code), result.evidence_objection())
        assert decided.result == "PASS", result.output_tail
        assert "PytestAssertRewriteWarning" not in result.output_tail
        assert warm.forks == forks + (how == "warm")  # it really ran warm
        seen[how] = out.read_text()
    # The same plugin modules, each loaded by pytest's assertion-rewriting hook.
    assert seen["warm"] == seen["cold"]
    assert seen["warm"].endswith(" AssertionRewritingHook")


def test_a_run_that_gives_a_preloaded_import_another_value_starts_cold(tmp_path: Path) -> None:
    venv = plugin_venv(tmp_path)
    root = project(tmp_path / "p", {"tests/test_plugins.py": SUITE})
    warm = warm_interpreter(str(venv / "bin" / "python"))
    assert warm._await_ready()
    forks = warm.forks
    out = tmp_path / "dump.txt"
    result = run(root, venv, tmp_path, warm=True, env={"DUMP_TO": str(out), "ENVPLUG": "job"})
    assert result.exit_code == 0, result.output_tail  # envplug saw the job's value
    assert warm.forks == forks  # started cold: the warm copy had read ENVPLUG unset
    assert "ENVPLUG" in warm.env_read and warm.env_read["ENVPLUG"] is None


def test_a_suite_that_disables_autoloading_forks_from_a_warm_one_that_preloads_nothing(
    tmp_path: Path,
) -> None:
    venv = plugin_venv(tmp_path)
    python = str(venv / "bin" / "python")
    root = project(
        tmp_path / "p",
        {
            "tests/test_alone.py": (
                "import sys\n\n\ndef test_no_plugin_was_imported():\n"
                "    assert 'cleanplug' not in sys.modules\n"
            )
        },
    )
    preloading, plain = warm_interpreter(python), warm_interpreter(python, preload=False)
    assert preloading is not plain and plain._await_ready() and preloading._await_ready()
    assert plain.plugins == () and "cleanplug" in preloading.plugins
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for warm, preloads in ((preloading, True), (plain, False)):
        forks = warm.forks
        result = run(root, venv, tmp_path, warm=True, env=env, preload=preloads)
        assert result.exit_code == 0, result.output_tail
        assert warm.forks == forks + (not preloads)  # the preloading one sends it cold
