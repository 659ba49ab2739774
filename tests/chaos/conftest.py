"""Chaos fixtures: a fresh worker per test (tests kill it), on Redis and on RabbitMQ.
What the tests share besides fixtures is in tests/chaos/harness.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from testkit.fleet import Orchestrator, fleet_env, purge_queues
from tests.chaos.harness import BROKERS, REDIS, STATE_DB, Chaos
from tests.httpfixtures import http_server


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
