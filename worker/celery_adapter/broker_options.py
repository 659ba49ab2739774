"""What the broker must be told so that a running job is never handed to a second
worker, and an event is never recorded as sent when the broker dropped it.

Used by celeryconfig (at import) and by the worker's start-up checks
(worker.celery_adapter.app), which know the real concurrency and can look at the broker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from itertools import islice
from typing import Any

from kombu.entity import Queue

from worker.contracts import Contracts
from worker.settings import Settings

logger = logging.getLogger("testgate.brokeropts")

TESTS_QUEUE = "tests"
# kombu's Redis keys: one unacked hash and one binding set per exchange, per DB.
_UNACKED_KEY = "unacked"
_BINDING_PREFIX = "_kombu.binding."
# Celery's own broadcast exchanges, present wherever a worker or Flower ran.
_CELERY_EXCHANGES = frozenset({"celeryev", "celery.pidbox", "reply.celery.pidbox"})
# How many unacked messages the start-up check reads: a sample, not a full scan.
_UNACKED_SAMPLE = 1000


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def is_amqp(url: str) -> bool:
    return url.startswith(("amqp://", "amqps://", "pyamqp://"))


def delivery_budget_s(settings: Settings, contracts: Contracts | None, concurrency: int) -> int:
    """The longest one delivery of a job may take on this worker (see
    Settings.required_visibility_timeout_s for what it counts)."""
    longest = contracts.longest_timeout_s if contracts else settings.timeout_s
    setup = contracts.longest_setup_s if contracts else 0
    return settings.required_visibility_timeout_s(longest, setup, concurrency)


def transport_options(broker_url: str, visibility_timeout_s: int) -> dict[str, Any]:
    """kombu's transport options for the broker at `broker_url`."""
    if is_amqp(broker_url):
        # Every publish (advance, hand-back, retry) waits for the broker's confirm: a
        # nack (a full queue with reject-publish, an unroutable message) raises.
        return {"confirm_publish": True}
    return {
        # Redis redelivers a message not acked within this to another worker.
        "visibility_timeout": visibility_timeout_s,
        # kombu sweeps for messages of dead workers every interval x throttle seconds
        # (100 s by default); one cheap ZRANGE every 10 s brings a lost job back sooner.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }


def tests_queue(broker_url: str, budget_s: int) -> Queue:
    """The `tests` queue. On RabbitMQ its consumer timeout (30 min by default, after
    which the broker closes the channel and requeues the running job) is raised above
    the delivery budget. RabbitMQ may refuse to redeclare an existing queue with another
    value (PRECONDITION_FAILED): checked at start, see check_tests_queue."""
    return Queue(TESTS_QUEUE, queue_arguments=tests_queue_arguments(broker_url, budget_s))


def tests_queue_arguments(broker_url: str, budget_s: int) -> dict[str, Any] | None:
    """The consumer timeout is rounded up to whole hours, so that a small change of
    settings does not change the queue's argument (which would make its redeclaration fail)."""
    if not is_amqp(broker_url):
        return None  # Redis has no queue arguments
    hours = -(-(budget_s + 1) // 3600)
    return {"x-consumer-timeout": hours * 3600 * 1000}


def eta_task_limit(concurrency: int, prefetch_multiplier: int) -> int:
    """At most as many messages held as there are pool slots: Celery otherwise raises
    the prefetch for each countdown retry it holds, and a held retry whose countdown
    ended waits behind a whole running job while its visibility timeout runs."""
    return max(concurrency, 1) * max(prefetch_multiplier, 1)


def foreign_queues(client: Any, own: Iterable[str]) -> list[str]:
    """Queues of other applications in this Redis DB: from kombu's binding keys, and
    from the routing keys of a sample of the messages held unacked. kombu keeps one
    unacked index per DB, and every consumer's sweep restores any entry older than its
    own visibility timeout, so any of them can hand our running job to a second worker."""
    names: set[str] = set()
    for key in client.scan_iter(match=f"{_BINDING_PREFIX}*", count=100):
        names.add(_text(key).removeprefix(_BINDING_PREFIX))
    for _tag, raw in islice(client.hscan_iter(_UNACKED_KEY, count=100), _UNACKED_SAMPLE):
        names.add(_routing_key(raw))
    allowed = set(own) | _CELERY_EXCHANGES
    return sorted(name for name in names if name not in allowed)


def _routing_key(raw: bytes | str) -> str:
    """The queue of one unacked entry (kombu stores [message, exchange, routing_key])."""
    try:
        _message, exchange, routing_key = json.loads(raw)
    except (ValueError, TypeError) as exc:
        logger.warning("unreadable unacked entry in the broker DB: %s", exc)
        return "<unreadable unacked entry>"
    return str(routing_key or exchange)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
