"""`testgate demo --broker redis://...`: the reference orchestrator against a real fleet."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from testkit.fleet import Orchestrator, WorkerProcess
from tests.integration.harness import REDIS_HOST
from worker.cli.demo import run_demo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DB = 9


def test_the_demo_drives_a_real_fleet_through_redis(tmp_path: Path) -> None:
    broker = f"{REDIS_HOST}/{DB}"
    redis.Redis.from_url(broker).flushdb()
    env = {
        "TESTGATE_BROKER_URL": broker,
        "TESTGATE_RESULT_BACKEND": broker,
        "TESTGATE_KEY_PREFIX": f"demo-{uuid.uuid4().hex[:6]}:",
        "TESTGATE_GIT_URL_TEMPLATE": str(tmp_path / "repos" / "{repo}"),
        "TESTGATE_REPOS": "sample",
        "TESTGATE_SELF_REPO": "sample",
        "TESTGATE_SMOKE_ENABLED": "false",
        "TESTGATE_WORKDIR": str(tmp_path / "work"),
    }
    worker = WorkerProcess.start(
        env, tmp_path / "worker.log", f"demo-{uuid.uuid4().hex[:6]}", concurrency=2
    )
    try:
        worker.wait_ready(Orchestrator.connect(broker, broker).app)
        lines: list[str] = []
        rows = run_demo(broker=broker, workdir=tmp_path, say=lines.append, timeout_s=180)
    finally:
        worker.stop()
        redis.Redis.from_url(broker).flushdb()
    stages = {row.work_item_id: row.stage for row in rows}
    assert stages == {"WI-1": "deploy-staging", "WI-2": "deploy-staging", "WI-3": "handed-back"}, (
        "\n".join(lines) + worker.tail()
    )
    assert "Task testgate.run_test_gate" in worker.tail(50_000)
