"""The pool process as a child subreaper, where no cgroup can be made: what a job
daemonises (even with its environment cleared) is adopted and killed when it ends.

The gate runs in a subprocess that made itself a subreaper, as a worker's pool process
does at start; the test process itself must not become one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from testkit.fleet import ROOT, pid_alive
from tests.projects import escaping_daemon_project

GATE_AS_SUBREAPER = """
import json, sys
from pathlib import Path
from tests.gateworld import job, world
from testkit.repofactory import make_origin
from worker.containment import subreaper
from worker.pipeline.runner import run_gate
from worker.containment.sandbox import warm_interpreter

tmp, project = Path(sys.argv[1]), Path(sys.argv[2])
tmp.mkdir()
if sys.argv[3] == "subreaper":
    assert subreaper.become_subreaper() and subreaper.is_subreaper()
# No cgroup (as for a non-root worker): only the subreaper can catch the daemon.
w = world(tmp, {"escape": {"smoke_enabled": False}}, suite_max_pids=0, containment="off")
warm = warm_interpreter()  # as a pool process does at start, before any job
files = {str(p.relative_to(project)): p.read_text() for p in project.rglob("*.py")}
make_origin(w.origins, "escape", files)
result = run_gate(job("escape"), w.ctx, attempt=0, delivery_id="d1")
print(json.dumps({"kind": result.kind, "result": w.sender.sent[0][1]["result"],
                  "warm_kept": warm.alive() and warm_interpreter() is warm}))
"""


def run_gate_in_child(tmp_path: Path, mode: str) -> tuple[dict[str, str], int]:
    project, pid_file = escaping_daemon_project(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", GATE_AS_SUBREAPER, str(tmp_path / "gate"), str(project), mode],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), int(pid_file.read_text())


def test_a_subreaper_gate_kills_a_daemon_that_cleared_its_environment(tmp_path: Path) -> None:
    outcome, daemon = run_gate_in_child(tmp_path, "subreaper")
    # The job's leftovers are reaped, the pool process's warm interpreter is not.
    assert outcome == {"kind": "advanced", "result": "PASS", "warm_kept": True}
    assert not pid_alive(daemon)


def test_without_the_subreaper_the_same_daemon_outlives_the_job(tmp_path: Path) -> None:
    outcome, daemon = run_gate_in_child(tmp_path, "plain")
    try:
        assert outcome == {"kind": "advanced", "result": "PASS", "warm_kept": True}
        assert pid_alive(daemon), "the control: nothing else would have caught it"
    finally:
        os.kill(daemon, 9)


def test_children_are_read_from_the_kernel_as_a_proc_scan_sees_them() -> None:
    from worker.containment.proctree import children_of
    from worker.containment.subreaper import children

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in children() and child.pid in children_of(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert child.pid not in children()
