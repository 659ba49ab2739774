"""Redis (broker, backend and state at once) restarts while a suite runs, and is still
down when the verdict is announced: nothing is lost, nothing is announced twice, and the
worker reconnects by itself."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from testkit.fleet import ADVANCE, Orchestrator, WorkerProcess, wait_for_file
from testkit.repofactory import make_origin
from tests.chaos.harness import BRANCH, slow_suite
from tests.redisserver import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, durable=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_redis_restart_mid_run_loses_no_job_and_announces_each_once(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "slow.pids"
    for repo, seconds in (("slow", 3), ("slow2", 0)):
        make_origin(
            tmp_path / "origins",
            repo,
            {
                "tests/test_slow.py": slow_suite(
                    pid_file if repo == "slow" else tmp_path / "other.pids", seconds
                )
            },
            branch=BRANCH,
        )
    contracts = tmp_path / "contracts.toml"
    contracts.write_text(
        "".join(
            f"[repos.{r}]\ntimeout_s = 30\nsmoke_enabled = false\n\n" for r in ("slow", "slow2")
        )
    )
    env = {
        "TESTGATE_BROKER_URL": private_redis.url,
        "TESTGATE_RESULT_BACKEND": private_redis.url,
        "TESTGATE_STATE_URL": private_redis.url,
        "TESTGATE_WORKDIR": str(tmp_path / "work"),
        "TESTGATE_GIT_URL_TEMPLATE": str(tmp_path / "origins" / "{repo}.git"),
        "TESTGATE_CONTRACTS_FILE": str(contracts),
        "TESTGATE_REPOS": "slow,slow2",
        "TESTGATE_TIMEOUT_S": "30",
        # Visibility timeout 30 + 5 + git steps of at most 3 s each + a 1 s countdown +
        # 2 s: a message whose ack was lost with the old connection comes back within
        # the test.
        "TESTGATE_DELIVERY_OVERHEAD_S": "2",
        "TESTGATE_GIT_TIMEOUT_S": "3",
        "TESTGATE_INFRA_RETRY_DELAY_S": "1",
        # The suite is watched from outside through its pid file (see the chaos fleet).
        "TESTGATE_CONTAINMENT": "off",
    }
    orchestrator = Orchestrator.connect(private_redis.url, private_redis.url)
    worker = WorkerProcess.start(env, tmp_path / "worker.log", f"restart-{uuid.uuid4().hex[:6]}")
    try:
        worker.wait_ready(orchestrator.app)
        job = {"work_item_id": "WI-r", "branch": BRANCH, "agent": "tester", "stage": "testing"}
        orchestrator.send(task_id=201, repo="slow", **job)
        orchestrator.send(task_id=202, repo="slow2", **job)  # waits in the queue (-c 1)
        wait_for_file(pid_file)
        private_redis.stop()
        down_at = time.monotonic()
        deadline = time.monotonic() + 60
        while "verdict work_item=WI-r repo=slow " not in worker.tail(20_000):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.1)
        private_redis.start()  # the verdict is being announced while Redis was away
        [first] = orchestrator.wait_for_event(201, ADVANCE, timeout=90)
        [second] = orchestrator.wait_for_event(202, ADVANCE, timeout=90)
        recovered_s = time.monotonic() - down_at
        assert first["result"] == "PASS" and second["result"] == "PASS", worker.tail()
        assert worker.process.poll() is None  # reconnected, not restarted
        # A job whose ack was lost with the connection is delivered again after the
        # visibility timeout; it must find itself done and announce nothing.
        broker = redis.Redis.from_url(private_redis.url)
        deadline = time.monotonic() + 90
        while broker.hlen("unacked") or broker.llen("tests"):
            assert time.monotonic() < deadline, "messages still held by the broker"
            time.sleep(0.2)
        assert len(orchestrator.events_for(201, ADVANCE)) == 1
        assert len(orchestrator.events_for(202, ADVANCE)) == 1
        print(f"\nCHAOS redis-restart advances=1+1 recovery_s={recovered_s:.1f}")
    finally:
        worker.stop()
