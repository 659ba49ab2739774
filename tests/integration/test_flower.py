"""Flower sees every worker and every tester job, with its arguments and result."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from testkit.fleet import ROOT, Orchestrator, WorkerProcess
from testkit.repofactory import make_origin
from tests.httpfixtures import free_port
from tests.integration.harness import REDIS_HOST
from tests.tools import required_tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
flower = pytest.importorskip("flower")

DB = 8
AUTH = "gate:flower-test"


def api(port: int, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", "Basic " + base64.b64encode(AUTH.encode()).decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@dataclass(frozen=True)
class Screenshot:
    png: Path
    dom: str


def chromium() -> str:
    return required_tool("chromium", "chromium")


def screenshot(port: int, page: str, tmp_path: Path) -> Screenshot:
    """A Flower page in headless Chromium, after its tables have loaded."""
    url = f"http://{AUTH}@127.0.0.1:{port}/{page}"
    png = tmp_path / f"flower-{page.split('/', maxsplit=1)[0]}.png"
    flags = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,700",
        # The table is filled by an XHR after load; virtual time lets it arrive.
        "--virtual-time-budget=8000",
    ]
    subprocess.run(
        [*flags, f"--screenshot={png}", url], check=True, timeout=90, capture_output=True
    )
    dom = subprocess.run(
        [*flags, "--dump-dom", url], check=True, timeout=90, capture_output=True, text=True
    ).stdout
    return Screenshot(png, dom)


def test_flower_lists_the_worker_and_the_tester_job(tmp_path: Path) -> None:
    broker = f"{REDIS_HOST}/{DB}"
    redis.Redis.from_url(broker).flushdb()
    make_origin(
        tmp_path / "origins",
        "orchestrator",
        {"tests/test_ok.py": "def test_ok():\n    assert True\n"},
    )
    env = {
        "TESTGATE_BROKER_URL": broker,
        "TESTGATE_RESULT_BACKEND": broker,
        "TESTGATE_KEY_PREFIX": f"flower-{uuid.uuid4().hex[:6]}:",
        "TESTGATE_GIT_URL_TEMPLATE": str(tmp_path / "origins" / "{repo}.git"),
        "TESTGATE_SMOKE_ENABLED": "false",
        "TESTGATE_WORKDIR": str(tmp_path / "work"),
    }
    port = free_port()
    name = f"flower-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess.start(env, tmp_path / "worker.log", name)
    with (tmp_path / "flower.log").open("wb") as log:
        flower_process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "flower",
                "--address=127.0.0.1",
                f"--port={port}",
                f"--basic-auth={AUTH}",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        orchestrator = Orchestrator.connect(broker, broker)
        worker.wait_ready(orchestrator.app)
        deadline = time.monotonic() + 60
        while True:  # Flower connects to the broker and the worker in its own time
            try:
                if any(name in w for w in api(port, "/api/workers?refresh=1")):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "flower.log").read_text()
            time.sleep(0.5)
        sent = orchestrator.send(
            task_id=1,
            repo="orchestrator",
            work_item_id="WI-fl",
            branch="feature/x",
            agent="tester",
            stage="testing",
        )
        assert orchestrator.wait_done(sent)["kind"] == "advanced"
        while True:
            task = api(port, f"/api/task/info/{sent.id}")
            if task.get("state") == "SUCCESS":
                break
            assert time.monotonic() < deadline + 60, task
            time.sleep(0.5)
        assert task["name"] == "testgate.run_test_gate"
        assert "WI-fl" in task["kwargs"]
        assert "advanced" in task["result"]
        tasks = screenshot(port, "tasks", tmp_path)
        assert sent.id in tasks.dom and "testgate.run_test_gate" in tasks.dom
        one = screenshot(port, f"task/{sent.id}", tmp_path)
        assert "WI-fl" in one.dom and "advanced" in one.dom
        for shot in (tasks, one):
            assert shot.png.read_bytes().startswith(b"\x89PNG")
            if os.environ.get("TESTGATE_WRITE_ARTIFACTS"):  # refreshes the pictures in docs/
                shutil.copyfile(shot.png, ROOT / "docs" / shot.png.name)
    finally:
        flower_process.terminate()
        flower_process.wait(timeout=30)
        worker.stop()
        redis.Redis.from_url(broker).flushdb()
