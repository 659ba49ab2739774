"""`testgate metrics --port`: the fleet's counters, queue and workers, scraped over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from testkit.fleet import ROOT
from tests.httpfixtures import free_port
from tests.integration.harness import Fleet, job

pytestmark = pytest.mark.integration


def scrape(port: int, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            assert time.monotonic() < deadline, "metrics endpoint did not come up"
            time.sleep(0.2)


def test_metrics_report_outcomes_durations_queue_and_workers(fleet: Fleet, task_id: int) -> None:
    orch = fleet.orchestrator
    assert orch.wait_done(orch.send(**job(task_id, "red", "WI-metrics")))["kind"] == "advanced"
    port = free_port()
    env = {
        **os.environ,
        "TESTGATE_BROKER_URL": fleet.broker,
        "TESTGATE_RESULT_BACKEND": fleet.backend,
        "TESTGATE_STATE_URL": fleet.backend,
        "TESTGATE_KEY_PREFIX": fleet.prefix,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "worker.cli.main", "metrics", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        text = scrape(port, time.monotonic() + 30)
    finally:
        server.terminate()
        server.wait(timeout=30)
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert int(values['testgate_jobs_total{outcome="code-fail"}']) >= 1
    assert int(values["testgate_suite_duration_seconds_count"]) >= 1
    assert int(values["testgate_workers_online"]) >= 1
    assert int(values["testgate_queue_depth"]) >= 0
