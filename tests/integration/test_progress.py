"""Live progress of a running job: PROGRESS state in the backend, `testgate watch`."""

from __future__ import annotations

import pytest

from testkit.fleet import run_cli
from tests.integration.harness import Fleet, job

pytestmark = pytest.mark.integration


def test_a_running_job_reports_progress_and_watch_shows_a_bar(fleet: Fleet, task_id: int) -> None:
    sent = fleet.orchestrator.send(**job(task_id, "steps", "WI-steps"))
    env = {"TESTGATE_BROKER_URL": fleet.broker, "TESTGATE_RESULT_BACKEND": fleet.backend}
    watched = run_cli("watch", sent.id, "--timeout", "120", env=env, timeout=150)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    lines = watched.stdout.splitlines()
    done = [int(line.split("] ")[1].split("/")[0]) for line in lines if "/6 tests," in line]
    # The bar moved while the suite ran (polling may miss the last step before the end).
    assert len(done) >= 2 and done == sorted(done) and done[0] < 6, lines
    assert lines[-1].startswith("SUCCESS: advanced")
