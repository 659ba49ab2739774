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


def test_the_run_lock_admits_one_owner_and_is_reentrant_for_it(state: GateState) -> None:
    assert state.acquire_run("7:main", "delivery-a", 60) is None
    assert state.acquire_run("7:main", "delivery-b", 60) == "delivery-a"
    assert state.acquire_run("7:main", "delivery-a", 60) is None  # its own redelivery
    state.release_run("7:main", "delivery-b")  # not the owner: no effect
    assert state.acquire_run("7:main", "delivery-b", 60) == "delivery-a"
    state.release_run("7:main", "delivery-a")
    assert state.acquire_run("7:main", "delivery-b", 60) is None


def test_done_commits_are_remembered_per_task(state: GateState) -> None:
    assert state.already_done(7, ["abc"]) is False
    state.mark_done(7, ["abc", "def"])
    assert state.already_done(7, ["zzz", "def"]) is True
    assert state.already_done(8, ["abc"]) is False


def test_an_expired_lease_can_be_taken_over() -> None:
    server = fakeredis.FakeServer()
    state = RedisState(fakeredis.FakeRedis(server=server), prefix="t:")
    assert state.acquire_run("k", "a", 60) is None
    fakeredis.FakeRedis(server=server).delete("t:run:k")  # what expiry does
    assert state.acquire_run("k", "b", 60) is None


def test_an_unreachable_redis_raises_state_unavailable_but_counting_does_not() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    state = RedisState(fakeredis.FakeRedis(server=server), prefix="t:")
    state.bump("runs")  # logged, not raised
    with pytest.raises(StateUnavailable):
        state.already_done(1, ["abc"])
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
