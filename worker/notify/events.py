"""The two events the orchestrator receives (docs/contract.md §8): advance and hand-back.

They go by task name to the orchestrator's queue (a Celery signature; the
orchestrator never imports testgate), or as a JSON POST when a webhook is configured.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from celery import Celery
from kombu.exceptions import OperationalError

from worker.errors import EventDeliveryError, WebhookError
from worker.notify.webhook import post_json
from worker.settings import Settings

logger = logging.getLogger("testgate.events")


def publish_retry_policy(max_retries: int) -> dict[str, float]:
    """kombu retries the publish itself while the broker is briefly away: waits of
    0.5, 1.5, 2.5 ... s, at most 5 s each (8 retries: about 27 s in all)."""
    return dict(max_retries=max_retries, interval_start=0.5, interval_step=1.0, interval_max=5.0)


@dataclass(frozen=True)
class Advance:
    task_id: int
    repo: str
    work_item_id: str
    branch: str
    result: str
    exit_code: int | None
    smoke: str
    commit: str | None
    report_path: str
    report_pushed: bool
    outcome: str
    failure_packet: dict[str, Any] | None = None  # only for repos that opted in

    def kwargs(self) -> dict[str, Any]:
        # finished_agent="tester" is what the orchestrator's rollback rule matches on.
        fields = asdict(self)
        if fields["failure_packet"] is None:
            del fields["failure_packet"]  # the message of a repo that did not opt in is unchanged
        return {"current_stage": "testing", "finished_agent": "tester", **fields}


@dataclass(frozen=True)
class HandBack:
    task_id: int | None
    repo: str | None
    reason: str

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)


class EventSender(Protocol):
    def send(self, task_name: str, kwargs: dict[str, Any]) -> None:
        """Deliver one event or raise EventDeliveryError."""
        ...


class CelerySender:
    """Publishes `task_name(**kwargs)` on the orchestrator queue.

    Sent means the broker took it: on RabbitMQ by its publisher confirm (the worker's
    `confirm_publish` transport option, worker/celery_adapter/broker_options.py), on
    Redis by the reply to the LPUSH. A nack, an error reply or a missing confirm raises
    EventDeliveryError, so the job is retried instead of being recorded as announced."""

    def __init__(self, app: Celery, queue: str, publish_retries: int = 8) -> None:
        self._app = app
        self._queue = queue
        self._retry_policy = publish_retry_policy(publish_retries)
        self._errors = _publish_errors(app)

    def send(self, task_name: str, kwargs: dict[str, Any]) -> None:
        signature = self._app.signature(task_name, kwargs=kwargs, queue=self._queue)
        try:
            signature.apply_async(
                retry=True, retry_policy=self._retry_policy, confirm_timeout=CONFIRM_TIMEOUT_S
            )
        except self._errors as exc:
            raise EventDeliveryError(f"{task_name} not published: {_describe(exc)}") from exc


# The longest a publish waits for RabbitMQ's confirm: a broker that stops answering (a
# memory alarm blocks publishers) becomes a retried error instead of a hung job.
CONFIRM_TIMEOUT_S = 30.0


def _publish_errors(app: Celery) -> tuple[type[BaseException], ...]:
    """What a publish can fail with. kombu wraps only the errors it deems recoverable;
    the transport's others pass through as they are: a Redis error reply (OOM,
    READONLY) or an AMQP channel error (a queue declared with other arguments)."""
    with app.connection_for_write() as conn:  # the transport's class only, no connect
        return (OperationalError, OSError, *conn.connection_errors, *conn.channel_errors)


def _describe(exc: BaseException) -> str:
    """The error and its causes: a RabbitMQ nack arrives as an OperationalError with no
    text of its own, wrapping amqp's MessageNacked."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 3:
        text = str(current)
        parts.append(f"{type(current).__name__}: {text}" if text else type(current).__name__)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


class WebhookSender:
    """POSTs `{"event": task_name, "kwargs": {...}}`, signed when a secret is set."""

    def __init__(self, url: str, secret: str = "") -> None:
        self._url = url
        self._secret = secret

    def send(self, task_name: str, kwargs: dict[str, Any]) -> None:
        try:
            post_json(self._url, {"event": task_name, "kwargs": kwargs}, secret=self._secret)
        except WebhookError as exc:
            raise EventDeliveryError(str(exc)) from exc


def make_sender(settings: Settings, app: Celery) -> EventSender:
    if settings.webhook_url:
        return WebhookSender(settings.webhook_url, settings.webhook_secret)
    return CelerySender(app, settings.orchestrator_queue, settings.event_publish_retries)
