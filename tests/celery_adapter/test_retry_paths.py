"""Every retry and reject path keeps the message when the retry cannot be published:
Celery's Task.retry raises Reject(requeue=False) then, which would ack it and lose the
job; the workers' tasks turn it into a requeue."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from celery.exceptions import Reject, Retry

from testkit.repofactory import OriginFactory, branch_tip
from tests.gateworld import WorldFactory, job
from tests.pipeline.inline_sharding import module_of_tests, sharded_world
from worker.celery_adapter.app import app
from worker.celery_adapter.runtime import configure, retry_or_requeue
from worker.celery_adapter.shard_tasks import merge_test_shards, shards_failed
from worker.errors import StateUnavailable
from worker.shards.protocol import Deal
from worker.state import MemoryState


@dataclass
class Request:
    id: str = "m-1"
    args: tuple[Any, ...] = ()


@dataclass
class FakeTask:
    """Just the part of a bound Celery task that the helper uses."""

    publish_error: BaseException | None
    request: Request = field(default_factory=Request)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def retry(self, **options: Any) -> BaseException:
        self.calls.append(options)
        if self.publish_error is not None:
            raise self.publish_error
        published: BaseException = Retry("retry published")
        return published


def test_a_retry_that_could_not_be_published_requeues_the_message() -> None:
    task = FakeTask(Reject(ConnectionError("broker away"), requeue=False))
    raised = retry_or_requeue(task, countdown=1, max_retries=None)
    assert isinstance(raised, Reject) and raised.requeue is True
    assert task.calls == [{"throw": False, "countdown": 1, "max_retries": None}]


def test_a_publish_error_outside_celerys_handler_requeues_too() -> None:
    task = FakeTask(OSError("connection reset"))
    raised = retry_or_requeue(task, countdown=1)
    assert isinstance(raised, Reject) and raised.requeue is True


def test_a_published_retry_is_celerys_retry() -> None:
    raised = retry_or_requeue(FakeTask(None), countdown=1)
    assert isinstance(raised, Retry)


def test_the_chord_has_an_error_path_and_it_is_a_new_style_errback() -> None:
    """Celery calls an errback with (request, exc, traceback) only if it takes more than
    one argument; the error path reads the failed merge's id and arguments from it."""
    from celery.utils.functional import arity_greater

    assert arity_greater(shards_failed.__header__, 1)
    assert merge_test_shards.acks_late and merge_test_shards.reject_on_worker_lost


def test_the_error_path_sends_one_fail_task_for_the_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[Any, ...]] = []

    def fake_apply_async(args: tuple[Any, ...], **options: Any) -> None:
        assert options["queue"] == "tests" and options["retry"] is True
        sent.append(args)

    monkeypatch.setattr(
        "worker.celery_adapter.shard_tasks.fail_sharded_job.apply_async", fake_apply_async
    )
    merge = Request("merge-7", (['{"index": 0}'], {"task_id": 7}, '{"deal": 1}'))
    shards_failed(merge, RuntimeError("boom"), None)
    [(merge_id, raw, deal, why)] = sent
    assert (merge_id, raw, deal) == ("merge-7", {"task_id": 7}, '{"deal": 1}')
    assert "boom" in why


class StateDownOnce(MemoryState):
    """Redis unreachable for the first question, back after."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def answered(self, message_id: str) -> bool:
        if self.failures:
            self.failures -= 1
            raise StateUnavailable("redis down")
        return super().answered(message_id)


def test_the_merge_is_retried_not_acked_while_state_is_unavailable(
    world: WorldFactory, origin: OriginFactory
) -> None:
    w, _ = sharded_world(world, 2)
    origin("split", {"tests/test_a.py": module_of_tests(["test_1", "test_2"])})
    commit = branch_tip(w.origins / "split.git", "feature/x")
    state = StateDownOnce()
    ctx = replace(w.ctx, state=state)
    deal = Deal(
        commit=commit,
        deal_id="d",
        shards=2,
        batches=(("tests/test_a.py::test_1",), ("tests/test_a.py::test_2",)),
    )
    app.conf.task_always_eager = True
    configure(ctx)
    try:  # eager: a Retry raised by the task runs it again at once
        outcome = merge_test_shards.apply(args=([], job("split"), deal.model_dump_json()))
    finally:
        configure(None)
        app.conf.task_always_eager = False
    summary = outcome.get(propagate=False)
    assert state.failures == 0
    assert isinstance(summary, dict) and summary["kind"] == "advanced", summary
    [(_, kwargs)] = w.sender.sent  # no shard results: failed closed, once
    assert (kwargs["result"], kwargs["outcome"]) == ("FAIL", "tool-error")
