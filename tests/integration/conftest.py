"""A real fleet for integration tests: Redis, a `celery -A worker worker -Q tests`
subprocess, bare git origins, a smoke server and an alert receiver on 127.0.0.1, and
a separate Celery app playing the orchestrator (it never imports testgate). What the
tests share besides fixtures is in tests/integration/harness.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from testkit.fleet import Orchestrator, WorkerProcess, fleet_env, purge_queues
from testkit.repofactory import make_origin
from tests.httpfixtures import healthy_routes, http_server
from tests.integration.harness import BROKER_DB, BROKERS, REDIS_HOST, STATE_DB, Fleet
from tests.integration.scenarios import BRANCH, contracts_toml, hang_marker, scenarios


def _flush(db: int) -> None:
    redis.Redis.from_url(f"{REDIS_HOST}/{db}").flushdb()


def _clean(broker: str) -> None:
    for db in (BROKER_DB, STATE_DB):
        _flush(db)
    if broker.startswith("amqp://"):
        purge_queues(broker)


@pytest.fixture(scope="session", params=sorted(BROKERS))
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """One fleet per broker: the whole integration suite runs on Redis and on RabbitMQ."""
    broker = BROKERS[request.param]
    tmp = tmp_path_factory.mktemp(f"fleet-{request.param}")
    _clean(broker)
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
            make_origin(
                origins, item.repo, item.files, branch=BRANCH, object_format=item.object_format
            )
        contracts = tmp / "contracts.toml"
        contracts.write_text(contracts_toml(items))
        prefix = f"testgate-test-{uuid.uuid4().hex[:8]}:"
        env = {
            **fleet_env(
                broker=broker,
                state=f"{REDIS_HOST}/{STATE_DB}",
                prefix=prefix,
                workdir=tmp / "workdir",
                origins=origins,
                contracts=contracts,
                repos=[item.repo for item in items],
                alert_url=f"{alert_base}/alert",
            ),
            "TESTGATE_GIT_EMAIL_DOMAIN": "gate.example",
        }
        log = tmp / "worker.log"
        worker = WorkerProcess.start(env, log, f"itest-{prefix.strip(':')}", concurrency=2)
        orchestrator = Orchestrator.connect(broker, f"{REDIS_HOST}/{STATE_DB}")
        try:
            worker.wait_ready(orchestrator.app)
            yield Fleet(
                orchestrator,
                origins,
                alerts,
                hang_marker(tmp),
                redis.Redis.from_url(f"{REDIS_HOST}/{STATE_DB}"),
                prefix,
                log,
                broker,
                f"{REDIS_HOST}/{STATE_DB}",
            )
        finally:
            worker.stop()
            _clean(broker)


_task_ids = iter(range(1000, 1_000_000))


@pytest.fixture
def task_id() -> int:
    return next(_task_ids)
