import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from kombu.connection import Connection
from kombu.entity import Queue

from worker.celery_adapter.app import (
    _check_dedicated_redis_db,
    app,
    check_configuration,
    check_tests_queue,
    fit_to_concurrency,
)
from worker.celery_adapter.broker_options import tests_queue_arguments as queue_arguments_for
from worker.contracts import parse_contracts
from worker.errors import UnsafeConfiguration
from worker.settings import Settings


def test_a_safe_default_configuration_passes() -> None:
    check_configuration(app.conf)


def test_network_isolation_without_a_working_unshare_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TESTGATE_SUITE_NETWORK_ISOLATION", "true")
    monkeypatch.setenv("TESTGATE_SUITE_MAX_MEMORY_MB", "0")  # so prlimit is not needed
    monkeypatch.setenv("TESTGATE_SUITE_MAX_FILE_MB", "0")
    monkeypatch.setenv("PATH", str(tmp_path))  # no unshare to be found
    with pytest.raises(UnsafeConfiguration, match="unshare --net"):
        check_configuration(app.conf)


def test_resource_limits_without_prlimit_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no prlimit to be found
    with pytest.raises(UnsafeConfiguration, match="prlimit"):
        check_configuration(app.conf)


REDIS = os.environ.get("TESTGATE_TEST_REDIS", "redis://127.0.0.1:6379")
RABBITMQ = os.environ.get("TESTGATE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
SHARED_DB = f"{REDIS}/8"  # a DB no other test uses


def redis_conf(**options: Any) -> SimpleNamespace:
    return SimpleNamespace(
        broker_url="redis://127.0.0.1:1/0",
        broker_transport_options=dict(options),
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
    )


def test_the_budget_counts_setup_git_lock_waits_and_a_held_countdown() -> None:
    s = Settings(
        timeout_s=900,
        kill_grace_s=5,
        git_timeout_s=300,
        infra_retry_delay_s=30,
        delivery_overhead_s=600,
    )
    alone = s.required_visibility_timeout_s(900)
    assert alone == 905 + 4 * 300 + 30 + 600
    assert s.required_visibility_timeout_s(900, longest_setup_s=1200) == alone + 1200
    # Each other job of the host may hold the mirror lock ahead of this one.
    assert s.required_visibility_timeout_s(900, concurrency=2) == alone + 2 * 2 * 300


def test_a_contract_s_setup_steps_count_up_to_their_timeouts() -> None:
    settings = Settings(contracts_file="")
    data = {"repos": {"web": {"setup": ["make deps", "make db"], "setup_timeout_s": 600}}}
    assert parse_contracts(data, settings).longest_setup_s == 1200


def test_a_worker_with_more_slots_gets_a_longer_visibility_and_holds_one_message_each() -> None:
    single = Settings().required_visibility_timeout_s(Settings().timeout_s)
    conf = redis_conf(visibility_timeout=single)
    with pytest.raises(UnsafeConfiguration, match="visibility_timeout"):
        check_configuration(conf, concurrency=3)
    fit_to_concurrency(conf, 3)
    assert conf.broker_transport_options["visibility_timeout"] > single
    assert conf.worker_eta_task_limit == 3
    check_configuration(conf, concurrency=3)


def test_an_explicit_visibility_timeout_is_not_raised_but_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TESTGATE_VISIBILITY_TIMEOUT_S", "100")
    conf = redis_conf(visibility_timeout=100)
    fit_to_concurrency(conf, 1)
    assert conf.broker_transport_options["visibility_timeout"] == 100
    with pytest.raises(UnsafeConfiguration, match="TESTGATE_VISIBILITY_TIMEOUT_S"):
        check_configuration(conf, concurrency=1)


@pytest.fixture
def shared_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(SHARED_DB)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()


def test_a_broker_db_with_only_testgate_and_the_orchestrator_passes(
    shared_db: redis.Redis,
) -> None:
    with Connection(SHARED_DB) as conn:
        for name in ("tests", "orchestrator"):
            with conn.SimpleQueue(name) as queue:
                queue.put({"x": 1})
    _check_dedicated_redis_db(SHARED_DB, "orchestrator")


def test_a_broker_db_shared_with_another_app_s_queue_is_refused(shared_db: redis.Redis) -> None:
    with Connection(SHARED_DB) as conn, conn.SimpleQueue("billing") as queue:
        queue.put({"x": 1})
    with pytest.raises(UnsafeConfiguration, match=r"shared with other queues \(billing\)"):
        _check_dedicated_redis_db(SHARED_DB, "orchestrator")


def test_another_app_s_unacked_message_is_seen_too(shared_db: redis.Redis) -> None:
    # No binding left, but a consumer of `mail` holds a message unacked in this DB.
    shared_db.hset("unacked", "tag-1", json.dumps([{"body": "x"}, "mail", "mail"]))
    with pytest.raises(UnsafeConfiguration, match=r"\(mail\)"):
        _check_dedicated_redis_db(SHARED_DB, "orchestrator")


def test_rabbitmq_s_consumer_timeout_is_set_above_the_budget() -> None:
    budget = Settings().required_visibility_timeout_s(1800)
    arguments = queue_arguments_for(RABBITMQ, budget)
    assert arguments is not None and arguments["x-consumer-timeout"] > budget * 1000
    assert queue_arguments_for("redis://127.0.0.1:1/0", budget) is None


def test_a_queue_that_exists_with_other_arguments_is_refused_at_start() -> None:
    name = f"tests-{uuid.uuid4().hex[:8]}"
    ours = Queue(name, queue_arguments={"x-max-length": 10})
    with Connection(RABBITMQ) as conn:
        Queue(name, queue_arguments={"x-max-length": 5})(conn.default_channel).declare()
        try:
            with pytest.raises(UnsafeConfiguration, match="PRECONDITION_FAILED"):
                check_tests_queue(conn, ours)
        finally:
            Queue(name)(conn.channel()).delete()


def test_a_new_queue_is_declared_with_our_arguments() -> None:
    name = f"tests-{uuid.uuid4().hex[:8]}"
    ours = Queue(name, queue_arguments={"x-consumer-timeout": 7200000})
    with Connection(RABBITMQ) as conn:
        try:
            check_tests_queue(conn, ours)
            _name, messages, _consumers = Queue(name)(conn.channel()).queue_declare(passive=True)
            assert messages == 0
        finally:
            Queue(name)(conn.channel()).delete()
