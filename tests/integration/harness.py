"""What the integration tests share (their fixtures are in conftest.py): the Redis and
brokers the fleet runs on, the `Fleet` a test is handed, and the job messages it sends."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from testkit.fleet import Orchestrator, job_kwargs
from tests.httpfixtures import Recorder
from tests.integration.scenarios import BRANCH

REDIS_HOST = os.environ.get("TESTGATE_TEST_REDIS", "redis://127.0.0.1:6379")
BROKER_DB, STATE_DB = 13, 14
# The fleet lives for the whole session: where one pytest process runs other tests
# meanwhile (pytest-xdist), their workers must not consume its RabbitMQ `tests` queue,
# so it gets a vhost of its own (tests/private_brokers.py); Redis DBs 13 and 14 are its.
BROKERS = {
    "redis": f"{REDIS_HOST}/{BROKER_DB}",
    "rabbitmq": os.environ.get(
        "TESTGATE_TEST_RABBITMQ_FLEET",
        os.environ.get("TESTGATE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//"),
    ),
}


@dataclass(frozen=True)
class Fleet:
    orchestrator: Orchestrator
    origins: Path
    alerts: Recorder
    hang_marker: str
    state: redis.Redis
    prefix: str
    log: Path
    broker: str
    backend: str


def job(task_id: int, repo: str, work_item: str, **extra: Any) -> dict[str, Any]:
    return job_kwargs(task_id, repo, branch=BRANCH, work_item=work_item, **extra)
