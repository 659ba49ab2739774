"""A suite that swaps the files the worker reads after it (probe records, stacks,
progress) for FIFOs, links or devices: the worker never blocks, never follows a link,
and the run FAILs for missing evidence. Real pytest runs, contained and warm."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.contained import run_contained
from tests.projects import project
from tests.tools import required_tool
from worker.containment.bwrap import SuiteView, interpreter_paths
from worker.containment.sandbox import Sandbox, warm_interpreter
from worker.insuite import HERE as INSUITE_DIR
from worker.suite.progress import Progress
from worker.suite.run import SuiteRun, run_suite
from worker.verdict import from_exit_code, with_evidence

PLANT = (
    "import os\n\n\n"
    "def plant(var, how):\n"
    "    # The records' names are not in the environment; their directory is.\n"
    "    names = {'GATE_SESSION_FILE': 'session.jsonl', 'GATE_OUTCOMES_FILE': 'outcomes.jsonl'}\n"
    "    here = os.path.dirname(os.environ['GATE_PROGRESS_FILE'])\n"
    "    path = os.environ.get(var) or os.path.join(here, names[var])\n"
    "    if os.path.lexists(path):\n"
    "        os.unlink(path)\n"
    "    if how == 'fifo':\n"
    "        os.mkfifo(path)\n"
    "    else:\n"
    "        os.symlink(how, path)\n\n\n"
    "def pytest_sessionfinish(session, exitstatus):\n"
    "    {plants}\n"
    "    os._exit(0)\n"
)

PLANTS = {
    "the session record as a FIFO": "plant('GATE_SESSION_FILE', 'fifo')",
    "the session record as a link to a forged record": (
        "open('/tmp/forged', 'w').write('{}'); plant('GATE_SESSION_FILE', '/tmp/forged')"
    ),
    "outcomes as a link to /dev/zero": "plant('GATE_OUTCOMES_FILE', '/dev/zero')",
    "outcomes as a FIFO": "plant('GATE_OUTCOMES_FILE', 'fifo')",
    "progress as a FIFO": "plant('GATE_PROGRESS_FILE', 'fifo')",
    "the current test as a link to /etc/shadow": "plant('GATE_CURRENT_TEST_FILE', '/etc/shadow')",
    "progress as a link to /dev/zero": "plant('GATE_PROGRESS_FILE', '/dev/zero')",
    "the stacks file as a link to /etc/shadow": "plant('GATE_STACKS_FILE', '/etc/shadow')",
}


def run(root: Path, tmp_path: Path, mode: str, seen: list[Progress]) -> SuiteRun:
    if mode == "contained-warm":
        return run_contained(root, mode="warm", progress=seen.append)
    view = None
    if mode == "contained":
        required_tool("bwrap", "bubblewrap")
        view = SuiteView(writable=(), readable=(INSUITE_DIR, *interpreter_paths(sys.executable)))
    sandbox = Sandbox(
        scratch_dir=tmp_path / "scratch",
        cookie=uuid.uuid4().hex,
        kill_grace_s=0.5,
        view=view,
        warm=warm_interpreter() if view is None else None,
    )
    sandbox.scratch_dir.mkdir()
    return run_suite(
        root, sandbox, python=sys.executable, target="tests/", timeout_s=60, progress=seen.append
    )


@pytest.mark.parametrize("mode", ["contained", "contained-warm", "warm"])
@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_planted_files_neither_block_the_worker_nor_pass_the_suite(
    tmp_path: Path, plant: str, mode: str
) -> None:
    files = {
        "tests/test_a.py": "def test_fails():\n    assert 0\n",
        "conftest.py": PLANT.replace("{plants}", PLANTS[plant]),
    }
    started = time.monotonic()
    result = run(project(tmp_path, files), tmp_path, mode, [])
    assert time.monotonic() - started < 30, "the worker waited on something the suite planted"
    decided = with_evidence(from_exit_code(result.exit_code), result.evidence_objection())
    assert (result.exit_code, decided.result, decided.outcome) == (0, "FAIL", "code-fail")
    assert "root:" not in result.output_tail
