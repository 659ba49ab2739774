"""An event is sent only when the broker took it: RabbitMQ by its publisher confirm,
Redis by its reply. A refusal raises EventDeliveryError (the job is retried) instead of
being recorded as announced."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kombu.connection import Connection
from kombu.entity import Queue

from tests.redisserver import RedisServer
from worker.celery_adapter.broker_options import transport_options
from worker.errors import EventDeliveryError
from worker.notify.events import CelerySender

RABBITMQ = os.environ.get("TESTGATE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
ADVANCE = "orchestrator.advance_stage"


def sender_app(broker: str, queue: Queue, options: dict[str, Any]) -> Celery:
    """An app configured as a worker's, publishing to `queue` (declared as it is)."""
    return Celery("confirms", broker=broker, broker_transport_options=options, task_queues=[queue])


@pytest.fixture
def full_queue() -> Iterator[Queue]:
    """A queue that refuses every message: max-length 0 with reject-publish overflow."""
    queue = Queue(
        f"full-{uuid.uuid4().hex[:8]}",
        queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
    )
    with Connection(RABBITMQ) as conn:
        queue(conn.default_channel).declare()
        try:
            yield queue
        finally:
            queue(conn.default_channel).delete()


def depth(queue: Queue) -> int:
    with Connection(RABBITMQ) as conn:
        _name, count, _consumers = queue(conn.default_channel).queue_declare(passive=True)
        return int(count)


def test_a_worker_on_rabbitmq_publishes_with_confirms() -> None:
    assert transport_options(RABBITMQ, 100) == {"confirm_publish": True}
    assert "confirm_publish" not in transport_options("redis://127.0.0.1:6379/0", 100)


def test_a_nacked_advance_raises_instead_of_counting_as_sent(full_queue: Queue) -> None:
    app = sender_app(RABBITMQ, full_queue, transport_options(RABBITMQ, 100))
    sender = CelerySender(app, full_queue.name, publish_retries=0)
    with pytest.raises(EventDeliveryError, match="MessageNacked"):
        sender.send(ADVANCE, {"task_id": 1})
    assert depth(full_queue) == 0


def test_without_confirms_the_same_drop_went_unnoticed(full_queue: Queue) -> None:
    """The control: what the worker did before, a dropped advance taken as sent."""
    app = sender_app(RABBITMQ, full_queue, {})
    CelerySender(app, full_queue.name, publish_retries=0).send(ADVANCE, {"task_id": 1})
    assert depth(full_queue) == 0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own, whose memory limit the test may change."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield f"{server.url}/0"
    finally:
        server.stop()


def test_a_redis_error_reply_raises_the_retried_error(own_redis: str) -> None:
    queue = Queue("orchestrator")
    app = sender_app(own_redis, queue, transport_options(own_redis, 100))
    sender = CelerySender(app, "orchestrator", publish_retries=0)
    sender.send(ADVANCE, {"task_id": 1})  # declared and sent while Redis has room
    client = redis.Redis.from_url(own_redis)
    assert client.llen("orchestrator") == 1
    client.config_set("maxmemory", 1)  # every write is now refused with OOM
    with pytest.raises(EventDeliveryError, match="OutOfMemoryError"):
        sender.send(ADVANCE, {"task_id": 2})
    client.config_set("maxmemory", 0)
    assert client.llen("orchestrator") == 1
