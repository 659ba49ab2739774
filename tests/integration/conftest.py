"""A real fleet for integration tests: Redis, a `celery -A worker worker -Q tests`
subprocess, bare git origins, a smoke server and an alert receiver on 127.0.0.1, and
a separate Celery app playing the orchestrator (it never imports testgate)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from tests.httpfixtures import Recorder, healthy_routes, http_server
from tests.integration.scenarios import BRANCH, contracts_toml, scenarios
from tests.repofactory import make_origin

ROOT = Path(__file__).resolve().parents[2]
REDIS_HOST = os.environ.get("TESTGATE_TEST_REDIS", "redis://127.0.0.1:6379")
BROKER_DB, STATE_DB = 13, 14


@dataclass
class Orchestrator:
    """Sends jobs by task name and collects what arrives on its queue."""

    app: Celery
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def send(self, **job: Any) -> AsyncResult:
        return self.app.send_task("testgate.run_test_gate", kwargs=job, queue="tests")

    def drain(self) -> None:
        with self.app.connection_for_read() as conn, conn.SimpleQueue("orchestrator") as queue:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    return
                _args, kwargs, _embed = message.decode()
                self.received.append((str(message.headers["task"]), dict(kwargs)))
                message.ack()

    def events_for(self, task_id: int, name: str) -> list[dict[str, Any]]:
        self.drain()
        return [kw for n, kw in self.received if n == name and kw.get("task_id") == task_id]

    def wait_done(self, result: AsyncResult, timeout: float = 120) -> dict[str, Any]:
        summary = result.get(timeout=timeout, propagate=True)
        assert isinstance(summary, dict)
        return summary


@dataclass(frozen=True)
class Fleet:
    orchestrator: Orchestrator
    origins: Path
    alerts: Recorder
    hang_pid_file: Path
    state: redis.Redis
    prefix: str
    log: Path


def _flush(db: int) -> None:
    redis.Redis.from_url(f"{REDIS_HOST}/{db}").flushdb()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    for db in (BROKER_DB, STATE_DB):
        _flush(db)
    smoke_routes = (
        healthy_routes("/ok")
        | healthy_routes("/err")
        | {"/err/status": (500, "down")}
        | healthy_routes("/nogate")
        | {"/nogate/queue": (200, '{"jobs": []}')}
    )
    with http_server(smoke_routes) as (smoke_base, _), http_server() as (alert_base, alerts):
        items = scenarios(tmp, smoke_base)
        origins = tmp / "origins"
        origins.mkdir()
        for item in items:
            make_origin(origins, item.repo, item.files, branch=BRANCH)
        contracts = tmp / "contracts.toml"
        contracts.write_text(contracts_toml(items))
        prefix = f"testgate-test-{uuid.uuid4().hex[:8]}:"
        env = {
            **os.environ,
            "TESTGATE_BROKER_URL": f"{REDIS_HOST}/{BROKER_DB}",
            "TESTGATE_RESULT_BACKEND": f"{REDIS_HOST}/{STATE_DB}",
            "TESTGATE_STATE_URL": f"{REDIS_HOST}/{STATE_DB}",
            "TESTGATE_KEY_PREFIX": prefix,
            "TESTGATE_WORKDIR": str(tmp / "workdir"),
            "TESTGATE_GIT_URL_TEMPLATE": str(origins / "{repo}.git"),
            "TESTGATE_CONTRACTS_FILE": str(contracts),
            "TESTGATE_REPOS": ",".join(item.repo for item in items),
            "TESTGATE_INFRA_MAX_RETRIES": "1",
            "TESTGATE_INFRA_RETRY_DELAY_S": "1",
            "TESTGATE_KILL_GRACE_S": "1",
            "TESTGATE_ALERT_WEBHOOK_URL": f"{alert_base}/alert",
            "TESTGATE_GIT_EMAIL_DOMAIN": "gate.example",
        }
        log = tmp / "worker.log"
        with log.open("wb") as log_file:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker",
                    "worker",
                    "-Q",
                    "tests",
                    "-c",
                    "2",
                    "-l",
                    "info",
                    "--without-gossip",
                    "--without-mingle",
                    "-n",
                    f"itest-{prefix.strip(':')}@%h",
                ],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        app = Celery(
            "orchestrator", broker=f"{REDIS_HOST}/{BROKER_DB}", backend=f"{REDIS_HOST}/{STATE_DB}"
        )
        app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
        try:
            _wait_until_ready(app, worker, log)
            yield Fleet(
                Orchestrator(app),
                origins,
                alerts,
                tmp / "hang-child.pid",
                redis.Redis.from_url(f"{REDIS_HOST}/{STATE_DB}"),
                prefix,
                log,
            )
        finally:
            _stop(worker)
            for db in (BROKER_DB, STATE_DB):
                _flush(db)


def _wait_until_ready(app: Celery, worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited {worker.returncode}:\n{log.read_text()[-4000:]}")
        if app.control.ping(timeout=0.5):
            return
    raise RuntimeError(f"worker not ready after 60 s:\n{log.read_text()[-4000:]}")


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


_task_ids = iter(range(1000, 1_000_000))


@pytest.fixture
def task_id() -> int:
    return next(_task_ids)


def job(task_id: int, repo: str, work_item: str, **extra: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "repo": repo,
        "work_item_id": work_item,
        "branch": BRANCH,
        "agent": "tester",
        "stage": "testing",
        **extra,
    }
