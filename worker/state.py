"""State shared by every worker: counters, the run lock and the done ledger.

Kept in Redis so that counters add up across the fleet and so that a redelivered or
duplicated job is recognised by whichever worker receives it. `MemoryState` is the
same contract for the embedded, single-process mode (no Redis).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, Protocol

import redis

from worker import names
from worker.errors import StateUnavailable

logger = logging.getLogger("testgate.state")

COUNTERS = ("runs", "pass", "fail", "tool_error", "deferred", "handed_back", "redelivered")
DONE_TTL_S = 30 * 24 * 3600

# Delete the lock only if we still own it: a lease that expired and was taken by
# another delivery must not be released by the one that lost it.
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class GateState(Protocol):
    def bump(self, counter: str, amount: int = 1) -> None: ...
    def counters(self) -> dict[str, int]: ...
    def acquire_run(self, key: str, owner: str, ttl_s: int) -> str | None:
        """Take the run lock for `key`; return None if taken, else the current holder."""
        ...

    def release_run(self, key: str, owner: str) -> None: ...
    def already_done(self, task_id: int, commits: Iterable[str]) -> bool: ...
    def mark_done(self, task_id: int, commits: Iterable[str]) -> None: ...
    def count_delivery(self, key: str) -> int:
        """Count one more start of `key`; return how many starts there have been."""
        ...

    def test_durations(self, repo: str) -> dict[str, float]:
        """Seconds per test id recorded on earlier runs of `repo` (for shard plans)."""
        ...

    def record_durations(self, repo: str, durations: dict[str, float]) -> None: ...

    def failing_tests(self, repo: str, branch: str) -> list[str]:
        """Test ids that failed on the last run of `branch` of `repo` (run first next time)."""
        ...

    def record_failing(self, repo: str, branch: str, test_ids: Iterable[str]) -> None:
        """Replace that list (empty: the branch's last run had no failing test)."""
        ...


class RedisState:
    def __init__(self, client: redis.Redis, prefix: str = names.KEY_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._release = client.register_script(_RELEASE_IF_OWNER)

    @classmethod
    def from_url(cls, url: str, prefix: str = names.KEY_PREFIX) -> RedisState:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        return cls(client, prefix)

    def bump(self, counter: str, amount: int = 1) -> None:
        """Observability must never break a decision: errors are logged, not raised."""
        try:
            self._redis.hincrby(self._key(names.COUNTERS_KEY), counter, amount)
        except redis.RedisError as exc:
            logger.warning("counter %s not incremented: %s", counter, exc)

    def counters(self) -> dict[str, int]:
        raw: dict[Any, Any] = self._call(self._redis.hgetall, self._key(names.COUNTERS_KEY))
        found = {_text(k): int(v) for k, v in raw.items()}
        return {name: found.get(name, 0) for name in COUNTERS} | found

    def acquire_run(self, key: str, owner: str, ttl_s: int) -> str | None:
        lock = self._key(f"{names.RUN_LOCK_KEY}{key}")
        if self._call(self._redis.set, lock, owner, nx=True, ex=ttl_s):
            return None
        holder = self._call(self._redis.get, lock)
        if holder is None:  # expired between SET and GET: try once more
            return None if self._call(self._redis.set, lock, owner, nx=True, ex=ttl_s) else "?"
        if _text(holder) == owner:
            # The same message delivered again (its worker died holding the lock).
            self._call(self._redis.expire, lock, ttl_s)
            return None
        return _text(holder)

    def release_run(self, key: str, owner: str) -> None:
        try:
            self._release(keys=[self._key(f"{names.RUN_LOCK_KEY}{key}")], args=[owner])
        except redis.RedisError as exc:
            # The lease expires on its own; a stuck lock costs a delay, never a job.
            logger.warning("run lock %s not released (expires by itself): %s", key, exc)

    def already_done(self, task_id: int, commits: Iterable[str]) -> bool:
        done = self._key(f"{names.DONE_KEY}{task_id}")
        return any(self._call(self._redis.sismember, done, c) for c in commits if c)

    def mark_done(self, task_id: int, commits: Iterable[str]) -> None:
        done = self._key(f"{names.DONE_KEY}{task_id}")
        members = [c for c in commits if c]
        if not members:
            return
        pipe = self._redis.pipeline()
        pipe.sadd(done, *members)
        pipe.expire(done, DONE_TTL_S)
        self._call(pipe.execute)

    def count_delivery(self, key: str) -> int:
        counter = self._key(f"{names.DELIVERIES_KEY}{key}")
        pipe = self._redis.pipeline()
        pipe.incr(counter)
        pipe.expire(counter, DONE_TTL_S)
        count, _ = self._call(pipe.execute)
        return int(count)

    def test_durations(self, repo: str) -> dict[str, float]:
        """Never a reason to fail a job: without them shards are dealt round-robin."""
        try:
            raw: dict[Any, Any] = self._redis.hgetall(self._key(f"{names.DURATIONS_KEY}{repo}"))
        except redis.RedisError as exc:
            logger.warning("test durations of %s not read: %s", repo, exc)
            return {}
        return {_text(k): float(v) for k, v in raw.items()}

    def record_durations(self, repo: str, durations: dict[str, float]) -> None:
        if not durations:
            return
        key = self._key(f"{names.DURATIONS_KEY}{repo}")
        try:
            pipe = self._redis.pipeline()
            pipe.hset(key, mapping={k: f"{v:.3f}" for k, v in durations.items()})
            pipe.expire(key, DONE_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            logger.warning("test durations of %s not recorded: %s", repo, exc)

    def failing_tests(self, repo: str, branch: str) -> list[str]:
        """Never a reason to fail a job: without them the suite runs in its own order."""
        try:
            raw = self._redis.smembers(self._key(f"{names.FAILING_KEY}{repo}:{branch}"))
        except redis.RedisError as exc:
            logger.warning("failing tests of %s@%s not read: %s", repo, branch, exc)
            return []
        return sorted(_text(t) for t in raw)

    def record_failing(self, repo: str, branch: str, test_ids: Iterable[str]) -> None:
        key = self._key(f"{names.FAILING_KEY}{repo}:{branch}")
        members = sorted(set(test_ids))
        try:
            pipe = self._redis.pipeline()
            pipe.delete(key)
            if members:
                pipe.sadd(key, *members)
                pipe.expire(key, DONE_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            logger.warning("failing tests of %s@%s not recorded: %s", repo, branch, exc)

    def _key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StateUnavailable(f"shared state (Redis) unavailable: {exc}") from exc


class MemoryState:
    """One process only: the embedded mode and unit tests of the flow."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._runs: dict[str, str] = {}
        self._done: dict[int, set[str]] = {}
        self._deliveries: dict[str, int] = {}
        self._durations: dict[str, dict[str, float]] = {}
        self._failing: dict[tuple[str, str], list[str]] = {}

    def failing_tests(self, repo: str, branch: str) -> list[str]:
        with self._lock:
            return list(self._failing.get((repo, branch), []))

    def record_failing(self, repo: str, branch: str, test_ids: Iterable[str]) -> None:
        with self._lock:
            self._failing[(repo, branch)] = sorted(set(test_ids))

    def test_durations(self, repo: str) -> dict[str, float]:
        with self._lock:
            return dict(self._durations.get(repo, {}))

    def record_durations(self, repo: str, durations: dict[str, float]) -> None:
        with self._lock:
            self._durations.setdefault(repo, {}).update(durations)

    def count_delivery(self, key: str) -> int:
        with self._lock:
            self._deliveries[key] = self._deliveries.get(key, 0) + 1
            return self._deliveries[key]

    def bump(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[counter] = self._counters.get(counter, 0) + amount

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {name: self._counters.get(name, 0) for name in COUNTERS} | self._counters

    def acquire_run(self, key: str, owner: str, ttl_s: int) -> str | None:
        with self._lock:
            holder = self._runs.setdefault(key, owner)
            return None if holder == owner else holder

    def release_run(self, key: str, owner: str) -> None:
        with self._lock:
            if self._runs.get(key) == owner:
                del self._runs[key]

    def already_done(self, task_id: int, commits: Iterable[str]) -> bool:
        with self._lock:
            return any(c in self._done.get(task_id, set()) for c in commits)

    def mark_done(self, task_id: int, commits: Iterable[str]) -> None:
        with self._lock:
            self._done.setdefault(task_id, set()).update(c for c in commits if c)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
