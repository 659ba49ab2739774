"""The shared-state contract, for the Redis implementation (on fakeredis: pure logic)
and the in-memory one used by the embedded mode."""

from collections.abc import Iterator

import fakeredis
import pytest

from worker.errors import StateUnavailable
from worker.state import GateState, MemoryState, RedisState


@pytest.fixture(params=["redis", "memory"])
def state(request: pytest.FixtureRequest) -> Iterator[GateState]:
    if request.param == "redis":
        yield RedisState(fakeredis.FakeRedis(), prefix="t:")
    else:
        yield MemoryState()


def test_counters_start_at_zero_and_count(state: GateState) -> None:
    assert state.counters()["runs"] == 0
    state.bump("runs")
    state.bump("runs")
    state.bump("pass")
    counters = state.counters()
    assert (counters["runs"], counters["pass"], counters["fail"]) == (2, 1, 0)
    assert set(counters) >= {
        "runs",
        "pass",
        "fail",
        "tool_error",
        "deferred",
        "handed_back",
        "redelivered",
    }


def test_the_run_lease_admits_one_owner_and_is_not_reentrant(state: GateState) -> None:
    assert state.acquire_run("7:main", "m1/a", 60) is None
    assert state.acquire_run("7:main", "m2/b", 60) == "m1/a"
    # Another delivery of the same message is another owner: it does not get in.
    assert state.acquire_run("7:main", "m1/c", 60) == "m1/a"
    state.release_run("7:main", "m2/b")  # not the owner: no effect
    assert state.acquire_run("7:main", "m2/b", 60) == "m1/a"
    state.release_run("7:main", "m1/a")
    assert state.acquire_run("7:main", "m2/b", 60) is None


def test_only_the_owner_renews_the_lease(state: GateState) -> None:
    assert state.acquire_run("k", "m/a", 60) is None
    assert state.renew_run("k", "m/a", 60) is True
    assert state.renew_run("k", "m/b", 60) is False
    state.release_run("k", "m/a")
    assert state.renew_run("k", "m/a", 60) is False  # gone: not silently taken back


def test_a_message_is_claimed_for_its_answer_by_one_delivery_only(state: GateState) -> None:
    assert state.answered("m") is False
    assert state.claim_answer("m", "m/a", 300) == "claimed"
    assert state.claim_answer("m", "m/a", 300) == "claimed"  # its own claim
    assert state.claim_answer("m", "m/b", 300) == "pending"  # a has not sent yet
    state.release_answer("m", "m/b")  # not b's claim: no effect
    state.release_answer("m", "m/a")  # a's send failed: b may answer
    assert state.claim_answer("m", "m/b", 300) == "claimed"
    state.confirm_answer("m", "m/b")
    assert state.answered("m") is True
    assert state.claim_answer("m", "m/c", 300) == "answered"
    assert state.answered("other") is False


def test_an_expired_lease_can_be_taken_over() -> None:
    server = fakeredis.FakeServer()
    state = RedisState(fakeredis.FakeRedis(server=server), prefix="t:")
    assert state.acquire_run("k", "m/a", 60) is None
    fakeredis.FakeRedis(server=server).delete("t:run:k")  # what expiry does
    assert state.acquire_run("k", "m/b", 60) is None
    assert state.renew_run("k", "m/a", 60) is False  # the lapsed owner learns it lost


def test_an_unreachable_redis_raises_state_unavailable_but_counting_does_not() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    state = RedisState(fakeredis.FakeRedis(server=server), prefix="t:")
    state.bump("runs")  # logged, not raised
    with pytest.raises(StateUnavailable):
        state.answered("m")
    with pytest.raises(StateUnavailable):
        state.claim_answer("m", "m/a", 300)
    with pytest.raises(StateUnavailable):
        state.acquire_run("k", "a", 60)


def test_test_durations_are_kept_per_repo_and_updated(state: GateState) -> None:
    assert state.test_durations("r") == {}
    state.record_durations("r", {"t::a": 1.25, "t::b": 0.5})
    state.record_durations("r", {"t::a": 2.0})
    state.record_durations("other", {"t::a": 9.0})
    assert state.test_durations("r") == {"t::a": 2.0, "t::b": 0.5}


def test_durations_never_fail_a_job_when_redis_is_away() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    state = RedisState(fakeredis.FakeRedis(server=server), prefix="t:")
    state.record_durations("r", {"t::a": 1.0})  # logged, not raised
    assert state.test_durations("r") == {}
