"""`celery -A worker worker -Q tests` refuses configurations that lose or duplicate jobs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from testkit.fleet import ROOT, run_cli, worker_command
from tests.integration.harness import BROKER_DB, REDIS_HOST, STATE_DB
from worker.settings import Settings

pytestmark = pytest.mark.integration


def start_worker(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "TESTGATE_BROKER_URL": f"{REDIS_HOST}/{BROKER_DB}",
        "TESTGATE_RESULT_BACKEND": f"{REDIS_HOST}/{STATE_DB}",
        "TESTGATE_WORKDIR": str(tmp_path / "work"),
        **env,
    }
    return subprocess.run(
        worker_command(f"startup-{os.getpid()}"),
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_visibility_timeout_shorter_than_a_suite_is_refused(tmp_path: Path) -> None:
    done = start_worker(tmp_path, TESTGATE_VISIBILITY_TIMEOUT_S="100", TESTGATE_TIMEOUT_S="900")
    assert done.returncode == 78
    assert "visibility_timeout is 100s" in done.stderr
    # One job at a time (worker_command's -c 1): suite, git, a held countdown, overhead.
    required = Settings(timeout_s=900).required_visibility_timeout_s(900, concurrency=1)
    assert f"at least {required}" in done.stderr


def test_a_broken_contracts_file_is_refused_with_its_fault(tmp_path: Path) -> None:
    contracts = tmp_path / "contracts.toml"
    contracts.write_text('[repos.web]\ntimeout_s = "soon"\n')
    done = start_worker(tmp_path, TESTGATE_CONTRACTS_FILE=str(contracts))
    assert done.returncode == 78
    assert "[repos.web] timeout_s" in done.stderr


def test_status_reports_counters_queue_depth_and_workers_as_json(tmp_path: Path) -> None:
    env = {
        "TESTGATE_BROKER_URL": f"{REDIS_HOST}/{BROKER_DB}",
        "TESTGATE_RESULT_BACKEND": f"{REDIS_HOST}/{STATE_DB}",
        "TESTGATE_KEY_PREFIX": "status-test:",
    }
    done = run_cli("status", "--json", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["enabled"] is True and status["runs"] == 0
    assert isinstance(status["queue_depth"], int)
    assert isinstance(status["workers_online"], int)


def test_enqueue_refuses_an_invalid_job_with_a_clear_message(tmp_path: Path) -> None:
    done = run_cli(
        "enqueue",
        "--task-id",
        "1",
        "--repo",
        "r",
        "--work-item",
        "../etc",
        "--branch",
        "main",
        env={},
        timeout=60,
    )
    assert done.returncode == 2
    assert "work_item_id" in done.stderr
