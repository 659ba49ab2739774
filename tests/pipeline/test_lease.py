"""The run lease and the answer guard (worker/pipeline/lease.py, worker/pipeline/announce.py), on a
fakeredis server with real expiry: a live delivery keeps its lease by renewing it, a
redelivery of its message waits instead of taking over, only a lapse lets it in, and
a message's answer is sent at most once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import fakeredis
import pytest

from tests.gateworld import WorldFactory
from worker.errors import EventDeliveryError
from worker.pipeline.announce import Answer, send_once
from worker.pipeline.lease import Answered, Busy, Lease, take_lease
from worker.state import RedisState

TTL_S = 0.6


def redis_state() -> RedisState:
    return RedisState(fakeredis.FakeRedis(server=fakeredis.FakeServer()), prefix="t:")


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def test_a_renewed_lease_outlives_its_ttl_and_keeps_a_redelivery_waiting() -> None:
    state = redis_state()
    first = take_lease(state, "k", "m/first", TTL_S)
    assert isinstance(first, Lease)
    thread, out = in_thread(lambda: take_lease(state, "k", "m/again", TTL_S))
    # Four lease lengths: without renewal it would have lapsed and been taken.
    thread.join(timeout=4 * TTL_S)
    assert thread.is_alive() and out == [], "the redelivery took a live delivery's lease"
    assert first.lost is False
    first.stop()  # released without an answer (say, deferred): the redelivery runs
    thread.join(timeout=10)
    [second] = out
    assert isinstance(second, Lease) and second.owner == "m/again"
    second.stop()


def test_a_redelivery_waiting_on_a_live_delivery_ends_when_the_message_is_answered() -> None:
    state = redis_state()
    first = take_lease(state, "k", "m/first", TTL_S)
    assert isinstance(first, Lease)
    thread, out = in_thread(lambda: take_lease(state, "k", "m/again", TTL_S))
    assert state.claim_answer("m", "m/first", 300) == "claimed"
    state.confirm_answer("m", "m/first")
    thread.join(timeout=10)
    assert out and isinstance(out[0], Answered)
    first.stop()


def test_a_redelivery_that_gets_the_lease_after_the_answer_does_not_run_again() -> None:
    """The first delivery answers, then releases its lease: the waiting copy must not
    take that free lease for a lapse (found by the RabbitMQ connection-loss chaos test)."""
    state = redis_state()
    first = take_lease(state, "k", "m/first", TTL_S)
    assert isinstance(first, Lease)
    thread, out = in_thread(lambda: take_lease(state, "k", "m/again", TTL_S))
    assert state.claim_answer("m", "m/first", 300) == "claimed"
    state.confirm_answer("m", "m/first")
    first.stop()  # answered, then released: the order of runner.exclusively
    thread.join(timeout=10)
    assert out and isinstance(out[0], Answered)
    assert state.acquire_run("k", "m2/x", TTL_S) is None  # and it holds nothing


def test_only_a_lapsed_lease_lets_a_redelivery_take_over() -> None:
    state = redis_state()
    # A delivery that died: it took the lease and never renewed it.
    assert state.acquire_run("k", "m/dead", TTL_S) is None
    started = time.monotonic()
    taken = take_lease(state, "k", "m/again", TTL_S)
    assert isinstance(taken, Lease)
    assert time.monotonic() - started >= TTL_S * 0.9  # not before the lapse
    taken.stop()


def test_another_message_for_a_running_request_coalesces_at_once() -> None:
    state = redis_state()
    first = take_lease(state, "k", "m1/a", TTL_S)
    assert isinstance(first, Lease)
    assert take_lease(state, "k", "m2/b", TTL_S) == Busy("m1/a")
    first.stop()


def test_a_delivery_whose_lease_was_taken_over_learns_it() -> None:
    server = fakeredis.FakeServer()
    state = RedisState(fakeredis.FakeRedis(server=server), prefix="t:")
    lease = take_lease(state, "k", "m/a", TTL_S)
    assert isinstance(lease, Lease)
    fakeredis.FakeRedis(server=server).set("t:run:k", "m/b")  # a takeover after a lapse
    deadline = time.monotonic() + 10
    while not lease.lost:
        assert time.monotonic() < deadline, "the renewal never noticed the takeover"
        time.sleep(0.05)
    lease.stop()
    assert fakeredis.FakeRedis(server=server).get("t:run:k") == b"m/b"  # not released


def test_two_deliveries_racing_to_answer_send_once(world: WorldFactory) -> None:
    ctx = replace(world().ctx, state=redis_state())
    barrier = threading.Barrier(8)
    sent: list[str] = []
    outcomes: list[str] = []

    def deliver(i: int) -> None:
        answer = Answer("m", f"m/{i}")
        barrier.wait()
        try:
            fresh = send_once(ctx, answer, "advance", lambda: sent.append(answer.owner))
        except EventDeliveryError:  # another delivery is sending: this one is retried
            outcomes.append("retried")
            return
        outcomes.append("sent" if fresh else "answered")

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(sent) == 1 and outcomes.count("sent") == 1 and len(outcomes) == 8


def test_a_failed_send_releases_the_claim_so_the_next_delivery_answers(world: WorldFactory) -> None:
    w = world()

    def broken() -> None:
        raise EventDeliveryError("broker away")

    with pytest.raises(EventDeliveryError):
        send_once(w.ctx, Answer("m", "m/a"), "advance", broken)
    assert send_once(w.ctx, Answer("m", "m/b"), "advance", lambda: None) is True
    assert send_once(w.ctx, Answer("m", "m/c"), "advance", lambda: None) is False
