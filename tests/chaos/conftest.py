"""Chaos fixtures: a fresh worker per test (tests kill it), on Redis and on RabbitMQ."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.fleet import Orchestrator, WorkerProcess, fleet_env, purge_queues
from tests.httpfixtures import Recorder, http_server
from tests.repofactory import make_origin

REDIS = os.environ.get("TESTGATE_TEST_REDIS", "redis://127.0.0.1:6379")
RABBITMQ = os.environ.get("TESTGATE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
BROKER_DB, STATE_DB = 10, 11
BRANCH = "feature/x"
BROKERS = {"redis": f"{REDIS}/{BROKER_DB}", "rabbitmq": RABBITMQ}


# The pool process running the suite: its parent, or, when the suite was forked from
# the pool process's warm interpreter, its grandparent.
POOL_PROCESS = (
    "def pool_process():\n"
    "    pid = os.getppid()\n"
    "    with open(f'/proc/{pid}/cmdline', 'rb') as cmdline:\n"
    "        if b'insuite/zygote.py' in cmdline.read():\n"
    "            with open(f'/proc/{pid}/stat') as stat:\n"
    "                pid = int(stat.read().rsplit(')', 1)[1].split()[1])\n"
    "    return pid\n\n\n"
)


def slow_suite(pid_file: Path, seconds: float) -> str:
    """A passing test that records its pid and its pool process's."""
    return (
        "import os, time\n\n\n" + POOL_PROCESS + "def test_slow():\n"
        f"    with open({str(pid_file)!r}, 'a') as out:\n"
        "        out.write(f'{os.getpid()} {pool_process()}\\n')\n"
        f"    time.sleep({seconds})\n"
    )


POISON = (
    "import os, signal, time\n\n\n"
    + POOL_PROCESS
    + "def test_kills_the_process_that_runs_the_suite():\n"
    "    os.kill(pool_process(), signal.SIGKILL)\n"
    "    time.sleep(60)\n"
)


@dataclass
class Chaos:
    broker_name: str
    broker: str
    tmp: Path
    env: dict[str, str]
    orchestrator: Orchestrator
    alerts: Recorder
    workers: list[WorkerProcess]

    def origin(self, repo: str, files: dict[str, str]) -> Path:
        return make_origin(self.tmp / "origins", repo, files, branch=BRANCH)

    def start_worker(
        self, concurrency: int = 1, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        name = f"chaos{len(self.workers)}-{uuid.uuid4().hex[:6]}"
        worker = WorkerProcess.start(
            {**self.env, **(env or {})}, self.tmp / f"{name}.log", name, concurrency
        )
        self.workers.append(worker)
        worker.wait_ready(self.orchestrator.app)
        return worker

    def job(self, task_id: int, repo: str, **extra: object) -> dict[str, object]:
        return {
            "task_id": task_id,
            "repo": repo,
            "work_item_id": f"WI-{task_id}",
            "branch": BRANCH,
            "agent": "tester",
            "stage": "testing",
            **extra,
        }

    def logs(self) -> str:
        return "\n".join(w.tail() for w in self.workers)


@pytest.fixture(params=sorted(BROKERS))
def chaos(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chaos]:
    broker = BROKERS[request.param]
    redis.Redis.from_url(f"{REDIS}/{STATE_DB}").flushdb()
    if request.param == "redis":
        redis.Redis.from_url(broker).flushdb()
    else:
        purge_queues(broker)
    repos = ["slow", "poison", "slow2", "gated", "escape", "red"]
    contracts = tmp_path / "contracts.toml"
    contracts.write_text(
        "".join(
            f'[repos.{r}]\ntarget = "tests/"\ntimeout_s = 8\nsmoke_enabled = false\n\n'
            for r in repos
        )
    )
    with http_server() as (alert_base, alerts):
        env = {
            **fleet_env(
                broker=broker,
                state=f"{REDIS}/{STATE_DB}",
                prefix=f"chaos-{uuid.uuid4().hex[:8]}:",
                workdir=tmp_path / "work",
                origins=tmp_path / "origins",
                contracts=contracts,
                repos=repos,
                alert_url=f"{alert_base}/alert",
            ),
            "TESTGATE_MAX_DELIVERIES": "2",
            # These tests watch the suite from outside through files it writes (its pid,
            # its pool process's): a contained suite can do neither. Containment itself
            # is proven in tests/hostile.
            "TESTGATE_CONTAINMENT": "off",
            # A short Redis visibility timeout (8 s suite + 1 s grace + git steps of at
            # most 3 s each + 3 s) so that a job of a SIGKILLed worker comes back within
            # the test.
            "TESTGATE_DELIVERY_OVERHEAD_S": "3",
            "TESTGATE_TIMEOUT_S": "8",
            "TESTGATE_GIT_TIMEOUT_S": "3",
            # Publish retries of about 8 s (0.5 + 1.5 + 2.5 + 3.5), so that an outage
            # past them fits in a test.
            "TESTGATE_EVENT_PUBLISH_RETRIES": "4",
            # A short run lease, so that a dead delivery's job is taken over within
            # seconds (a live one renews it every second).
            "TESTGATE_LEASE_S": "3",
        }
        orchestrator = Orchestrator.connect(broker, f"{REDIS}/{STATE_DB}")
        state = Chaos(request.param, broker, tmp_path, env, orchestrator, alerts, [])
        try:
            yield state
        finally:
            for worker in state.workers:
                worker.stop()
            if request.param == "redis":
                redis.Redis.from_url(broker).flushdb()
            else:
                purge_queues(broker)
            redis.Redis.from_url(f"{REDIS}/{STATE_DB}").flushdb()
