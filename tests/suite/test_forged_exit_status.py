"""A failing suite that rewrites its own exit status still FAILs: the verdict needs
the probe's session record, not just exit 0. Real pytest runs: under bubblewrap cold and
forked from the contained warm interpreter, and warm without it."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from tests.contained import run_contained
from tests.projects import project
from tests.tools import required_tool
from worker.containment.bwrap import SuiteView, interpreter_paths
from worker.containment.sandbox import Sandbox, warm_interpreter
from worker.insuite import HERE as INSUITE_DIR
from worker.suite.run import SuiteRun, run_suite
from worker.verdict import from_exit_code, with_evidence

FAILING = "def test_fails():\n    assert 1 == 2\n"
PASSING = "def test_passes():\n    assert 1 == 1\n"

ATTACKS: dict[str, dict[str, str]] = {
    "os._exit(0) in a later test": {
        "tests/test_a.py": FAILING + "\n\ndef test_z_exit():\n    import os\n    os._exit(0)\n",
    },
    "a hook that sets session.exitstatus = 0": {
        "tests/test_a.py": FAILING,
        "conftest.py": (
            "import pytest\n\n\n"
            "@pytest.hookimpl(trylast=True)\n"
            "def pytest_sessionfinish(session, exitstatus):\n"
            "    session.exitstatus = 0\n"
        ),
    },
    "a hook wrapper that forces exit 0 after everyone": {
        "tests/test_a.py": FAILING,
        "conftest.py": (
            "import pytest\n\n\n"
            "@pytest.hookimpl(wrapper=True)\n"
            "def pytest_sessionfinish(session, exitstatus):\n"
            "    yield\n"
            "    session.exitstatus = 0\n"
        ),
    },
    "os._exit(0) in pytest_unconfigure": {
        "tests/test_a.py": FAILING,
        "conftest.py": "import os\n\n\ndef pytest_unconfigure(config):\n    os._exit(0)\n",
    },
    "pytest.exit(returncode=0) in a test": {
        "tests/test_a.py": FAILING + "\n\ndef test_z():\n    import pytest\n"
        "    pytest.exit('done', returncode=0)\n",
    },
    "pytest.exit(returncode=0) at collection": {
        "tests/test_a.py": FAILING,
        "conftest.py": "import pytest\n\npytest.exit('nothing to see', returncode=0)\n",
    },
    "addopts = --co": {"tests/test_a.py": FAILING, "pytest.ini": "[pytest]\naddopts = --co\n"},
    "addopts = --help": {"tests/test_a.py": FAILING, "pytest.ini": "[pytest]\naddopts = --help\n"},
    "addopts = --version": {
        "tests/test_a.py": FAILING,
        "pytest.ini": "[pytest]\naddopts = --version\n",
    },
    "the probe disabled": {
        "tests/test_a.py": FAILING,
        "pytest.ini": "[pytest]\naddopts = -p no:testgate_probe\n",
    },
    "junit disabled": {
        "tests/test_a.py": PASSING + "\n\n" + FAILING,
        "pytest.ini": "[pytest]\naddopts = -p no:junitxml\n",
    },
    "the probe's counts rewritten in-process, exit status forced to 0": {
        "tests/test_a.py": PASSING + "\n\n" + FAILING,
        "conftest.py": (
            "import sys\n\nimport pytest\n\n\n"
            "@pytest.hookimpl(wrapper=True, tryfirst=True)\n"
            "def pytest_sessionfinish(session, exitstatus):\n"
            "    probe = sys.modules.get('testgate_probe')\n"
            "    if probe is not None:\n"
            "        probe._counts.clear()\n"
            "        probe._counts['passed'] = session.testscollected\n"
            "    session.exitstatus = 0\n"
            "    return (yield)\n"
        ),
    },
    "the probe's failures turned into passes as they happen": {
        "tests/test_a.py": PASSING + "\n\n" + FAILING,
        "conftest.py": (
            "import pytest\n\n\n"
            "@pytest.hookimpl(tryfirst=True)\n"
            "def pytest_runtest_logreport(report):\n"
            "    pass\n\n\n"
            "@pytest.hookimpl(wrapper=True, tryfirst=True)\n"
            "def pytest_sessionfinish(session, exitstatus):\n"
            "    import sys\n"
            "    probe = sys.modules['testgate_probe']\n"
            "    probe._counts['passed'] += probe._counts.pop('failed', 0)\n"
            "    session.exitstatus = 0\n"
            "    return (yield)\n"
        ),
    },
    "the probe unregistered at configure": {
        "tests/test_a.py": FAILING,
        "conftest.py": (
            "import os\n\n\n"
            "def pytest_configure(config):\n"
            "    plugin = config.pluginmanager.get_plugin('testgate_probe')\n"
            "    if plugin is not None:\n"
            "        config.pluginmanager.unregister(plugin)\n\n\n"
            "def pytest_unconfigure(config):\n"
            "    os._exit(0)\n"
        ),
    },
    "progress forged to say everything passed": {
        "tests/test_a.py": FAILING,
        "conftest.py": (
            "import json, os\n\n\n"
            "def pytest_sessionfinish(session, exitstatus):\n"
            "    path = os.environ.get('GATE_PROGRESS_FILE')\n"
            "    if path:\n"
            "        open(path, 'w').write(json.dumps({'total': 1, 'done': 1, 'failed': 0}))\n"
            "    session.exitstatus = 0\n"
        ),
    },
    "deselecting everything": {
        "tests/test_a.py": FAILING,
        "pytest.ini": "[pytest]\naddopts = --deselect tests/test_a.py::test_fails\n",
    },
    "only skips": {
        "tests/test_a.py": "import pytest\n\n\n@pytest.mark.skip\ndef test_s():\n    assert 0\n",
    },
    "a forged session record without the nonce": {
        "tests/test_a.py": FAILING,
        "conftest.py": (
            "import json, os\n\n\n"
            "def pytest_sessionfinish(session, exitstatus):\n"
            "    here = os.path.dirname(os.environ['GATE_PROGRESS_FILE'])\n"
            "    path = os.path.join(here, 'session.jsonl')\n"
            "    record = {'nonce': os.environ.get('GATE_NONCE', 'guess'), 'finished': True,\n"
            "              'exitstatus': 0, 'collected': 1, 'counts': {'passed': 1}}\n"
            "    if path:\n"
            "        open(path, 'a').write(json.dumps(record) + '\\n')\n"
            "    os._exit(0)\n"
        ),
    },
    "a probe of its own shadowing the gate's": {
        "tests/test_a.py": FAILING,
        "testgate_probe.py": (
            "import json, os\n\n"
            "fd = os.environ.get('GATE_NONCE_FD')\n"
            "NONCE = os.read(int(fd), 128).decode() if fd else os.environ.get('GATE_NONCE', '')\n"
            "\n\n"
            "def pytest_sessionfinish(session, exitstatus):\n"
            "    record = {'nonce': NONCE, 'finished': True, 'exitstatus': 0,\n"
            "              'collected': 1, 'counts': {'passed': 1}}\n"
            "    open(os.environ['GATE_SESSION_FILE'], 'a').write(json.dumps(record) + '\\n')\n"
            "    os._exit(0)\n"
        ),
    },
    "a pytest package of its own shadowing pytest": {
        "tests/test_a.py": FAILING,
        "pytest/__init__.py": "",
        "pytest/__main__.py": "import os\n\nos._exit(0)\n",
    },
    "a record read from the nonce pipe it cannot reach": {
        "tests/test_a.py": FAILING,
        "conftest.py": (
            "import os\n\n\n"
            "def pytest_configure(config):\n"
            "    fd = os.environ.get('GATE_NONCE_FD')\n"
            "    if fd:\n"
            "        try:\n"
            "            os.read(int(fd), 64)\n"
            "        except OSError:\n"
            "            pass\n"
            "    os.environ['GATE_NONCE'] = 'stolen'\n"
            "\n\n"
            "def pytest_sessionfinish(session, exitstatus):\n"
            "    os._exit(0)\n"
        ),
    },
}


# A branch shipping a module named like one the warm interpreter preloaded runs cold.
SHADOWING = frozenset(
    {"a probe of its own shadowing the gate's", "a pytest package of its own shadowing pytest"}
)


def run(root: Path, tmp_path: Path, mode: str, *, expect_warm: bool = True) -> SuiteRun:
    if mode == "contained-warm":
        return run_contained(root, mode="warm", expect_warm=expect_warm)
    if mode == "contained":
        required_tool("bwrap", "bubblewrap")
        sandbox = Sandbox(
            scratch_dir=tmp_path / "scratch",
            cookie=uuid.uuid4().hex,
            kill_grace_s=0.5,
            view=SuiteView(writable=(), readable=(INSUITE_DIR, *interpreter_paths(sys.executable))),
        )
    else:
        sandbox = Sandbox(
            scratch_dir=tmp_path / "scratch",
            cookie=uuid.uuid4().hex,
            kill_grace_s=0.5,
            warm=warm_interpreter(),
        )
    sandbox.scratch_dir.mkdir()
    return run_suite(root, sandbox, python=sys.executable, target="tests/", timeout_s=60)


@pytest.mark.parametrize("mode", ["contained", "contained-warm", "warm"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_failing_suite_cannot_turn_itself_green(tmp_path: Path, attack: str, mode: str) -> None:
    result = run(
        project(tmp_path, ATTACKS[attack]), tmp_path, mode, expect_warm=attack not in SHADOWING
    )
    assert result.ran, result.spawn_error
    decided = with_evidence(from_exit_code(result.exit_code), result.evidence_objection())
    assert (decided.result, decided.outcome) == ("FAIL", "code-fail"), (
        result.exit_code,
        decided.reason,
        result.output_tail,
    )


@pytest.mark.parametrize("mode", ["contained", "contained-warm", "warm"])
def test_the_honest_control_passes(tmp_path: Path, mode: str) -> None:
    files = {
        "tests/test_a.py": PASSING,
        "tests/test_b.py": PASSING.replace("passes", "too"),
        # A strict project: any warning the gate's own modules caused would fail it.
        "pytest.ini": "[pytest]\nfilterwarnings =\n    error\n",
    }
    result = run(project(tmp_path, files), tmp_path, mode)
    decided = with_evidence(from_exit_code(result.exit_code), result.evidence_objection())
    assert (decided.result, decided.outcome) == ("PASS", "code-pass"), decided.reason
