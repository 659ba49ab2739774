"""State shared by every worker: counters, the run lease and the answer guard.

Kept in Redis so that counters add up across the fleet and so that a redelivered or
duplicated job is recognised by whichever worker receives it. `MemoryState` is the
same contract for the embedded, single-process mode (no Redis).

Two identities (README, "Delivery guarantees"):
- the run lease is per request, `(task_id, commit or branch)`: one delivery at a time
  runs it, and holds it only while it renews it;
- the answer guard is per message (one Celery task id): its advance or hand-back is
  claimed atomically right before it is sent, so no redelivery answers it twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

import redis

from worker import names
from worker.errors import StateUnavailable

logger = logging.getLogger("testgate.state")

COUNTERS = ("runs", "pass", "fail", "tool_error", "deferred", "handed_back", "redelivered")
DONE_TTL_S = 30 * 24 * 3600

# Delete the key only if we still own it: a lease that expired and was taken by
# another delivery must not be released by the one that lost it (nor another's answer claim).
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# Extend the lease only if we still own it: a delivery whose lease lapsed and was
# taken over must learn that, not silently steal it back.
_RENEW_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

# The answer guard, in one step so two deliveries can never both claim: absent ->
# "pending:<owner>" for a while (the send); our own pending claim is ours again (a
# second event of the same delivery); "sent:..." -> answered; another pending ->
# someone is sending right now.
_CLAIM_ANSWER = """
local held = redis.call('get', KEYS[1])
if not held then
  redis.call('set', KEYS[1], 'pending:' .. ARGV[1], 'EX', ARGV[2])
  return 'claimed'
end
if held == 'pending:' .. ARGV[1] then return 'claimed' end
if string.sub(held, 1, 5) == 'sent:' then return 'answered' end
return 'pending'
"""

_CONFIRM_ANSWER = """
if redis.call('get', KEYS[1]) == 'pending:' .. ARGV[1] then
  return redis.call('set', KEYS[1], 'sent:' .. ARGV[1], 'EX', ARGV[2])
end
return 0
"""

Claim = Literal["claimed", "answered", "pending"]


class GateState(Protocol):
    def bump(self, counter: str, amount: int = 1) -> None: ...
    def bump_many(self, amounts: Mapping[str, int]) -> None:
        """Several counters in one round trip (a job's phase histograms)."""

    def counters(self) -> dict[str, int]: ...
    def acquire_run(self, key: str, owner: str, ttl_s: float) -> str | None:
        """Take the run lease for `key`; None if we took it, else the current holder.
        Never re-entrant: each delivery has an owner of its own."""

    def renew_run(self, key: str, owner: str, ttl_s: float) -> bool:
        """Extend our lease; False if it is no longer ours (it lapsed and was taken)."""

    def release_run(self, key: str, owner: str) -> None: ...
    def claim_answer(self, message_id: str, owner: str, pending_s: int) -> Claim:
        """Claim the right to answer `message_id` (atomic). "claimed": send now;
        "answered": it was answered already; "pending": another delivery is sending."""

    def confirm_answer(self, message_id: str, owner: str) -> None:
        """The claimed answer was sent: remember it (never raises)."""

    def release_answer(self, message_id: str, owner: str) -> None:
        """The claimed answer could not be sent: let a later delivery send it."""

    def answered(self, message_id: str) -> bool: ...
    def count_delivery(self, key: str) -> int:
        """Count one more start of `key`; return how many starts there have been."""

    def test_durations(self, repo: str) -> dict[str, float]:
        """Seconds per test id recorded on earlier runs of `repo` (for dealing shards)."""

    def record_durations(self, repo: str, durations: dict[str, float]) -> None: ...

    def failing_tests(self, repo: str, branch: str) -> list[str]:
        """Test ids that failed on the last run of `branch` of `repo` (run first next time)."""

    def record_failing(self, repo: str, branch: str, test_ids: Iterable[str]) -> None:
        """Replace that list (empty: the branch's last run had no failing test)."""


class RedisState:
    def __init__(self, client: redis.Redis, prefix: str = names.KEY_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._release = client.register_script(_RELEASE_IF_OWNER)
        self._renew = client.register_script(_RENEW_IF_OWNER)
        self._claim = client.register_script(_CLAIM_ANSWER)
        self._confirm = client.register_script(_CONFIRM_ANSWER)

    @classmethod
    def from_url(cls, url: str, prefix: str = names.KEY_PREFIX) -> RedisState:
        return cls(redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5), prefix)

    def bump(self, counter: str, amount: int = 1) -> None:
        self.bump_many({counter: amount})

    def bump_many(self, amounts: Mapping[str, int]) -> None:
        """Observability must never break a decision: errors are logged, not raised."""
        if not amounts:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for counter, amount in amounts.items():
                pipe.hincrby(self._key(names.COUNTERS_KEY), counter, amount)
            pipe.execute()
        except redis.RedisError as exc:
            logger.warning("counters %s not incremented: %s", ", ".join(amounts), exc)

    def counters(self) -> dict[str, int]:
        raw: dict[Any, Any] = self._call(self._redis.hgetall, self._key(names.COUNTERS_KEY))
        found = {_text(k): int(v) for k, v in raw.items()}
        return {name: found.get(name, 0) for name in COUNTERS} | found

    def acquire_run(self, key: str, owner: str, ttl_s: float) -> str | None:
        lock = self._key(f"{names.RUN_LOCK_KEY}{key}")
        ttl_ms = max(1, int(ttl_s * 1000))
        if self._call(self._redis.set, lock, owner, nx=True, px=ttl_ms):
            return None
        holder = self._call(self._redis.get, lock)
        if holder is None:  # expired between SET and GET: try once more
            return None if self._call(self._redis.set, lock, owner, nx=True, px=ttl_ms) else "?"
        return _text(holder)

    def renew_run(self, key: str, owner: str, ttl_s: float) -> bool:
        ttl_ms = max(1, int(ttl_s * 1000))
        lock = self._key(f"{names.RUN_LOCK_KEY}{key}")
        return bool(self._call(self._renew, keys=[lock], args=[owner, ttl_ms]))

    def release_run(self, key: str, owner: str) -> None:
        try:
            self._release(keys=[self._key(f"{names.RUN_LOCK_KEY}{key}")], args=[owner])
        except redis.RedisError as exc:
            # The lease expires on its own; a stuck lock costs a delay, never a job.
            logger.warning("run lock %s not released (expires by itself): %s", key, exc)

    def claim_answer(self, message_id: str, owner: str, pending_s: int) -> Claim:
        key = self._key(f"{names.ANSWER_KEY}{message_id}")
        claim = _text(self._call(self._claim, keys=[key], args=[owner, pending_s]))
        if claim not in ("claimed", "answered", "pending"):
            raise StateUnavailable(f"unexpected answer claim {claim!r}")
        return claim  # type: ignore[return-value]  # narrowed by the check above

    def confirm_answer(self, message_id: str, owner: str) -> None:
        try:
            key = self._key(f"{names.ANSWER_KEY}{message_id}")
            self._confirm(keys=[key], args=[owner, DONE_TTL_S])
        except redis.RedisError as exc:
            # The pending claim still blocks other senders until it expires; only a
            # redelivery after that could answer again.
            logger.error("answer to %s sent but not recorded: %s", message_id, exc)

    def release_answer(self, message_id: str, owner: str) -> None:
        try:
            key = self._key(f"{names.ANSWER_KEY}{message_id}")
            self._release(keys=[key], args=[f"pending:{owner}"])
        except redis.RedisError as exc:
            # The pending claim expires on its own; the next delivery waits for that.
            logger.warning(
                "answer claim on %s not released (expires by itself): %s", message_id, exc
            )

    def answered(self, message_id: str) -> bool:
        held = self._call(self._redis.get, self._key(f"{names.ANSWER_KEY}{message_id}"))
        return held is not None and _text(held).startswith("sent:")

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
        self._answers: dict[str, str] = {}
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
        self.bump_many({counter: amount})

    def bump_many(self, amounts: Mapping[str, int]) -> None:
        with self._lock:
            for counter, amount in amounts.items():
                self._counters[counter] = self._counters.get(counter, 0) + amount

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {name: self._counters.get(name, 0) for name in COUNTERS} | self._counters

    def acquire_run(self, key: str, owner: str, ttl_s: float) -> str | None:
        """One process: a lease never lapses here, its holder ends or the process does."""
        with self._lock:
            holder = self._runs.setdefault(key, owner)
            return None if holder == owner else holder

    def renew_run(self, key: str, owner: str, ttl_s: float) -> bool:
        with self._lock:
            return self._runs.get(key) == owner

    def release_run(self, key: str, owner: str) -> None:
        with self._lock:
            if self._runs.get(key) == owner:
                del self._runs[key]

    def claim_answer(self, message_id: str, owner: str, pending_s: int) -> Claim:
        with self._lock:
            held = self._answers.setdefault(message_id, f"pending:{owner}")
            if held == f"pending:{owner}":
                return "claimed"
            return "answered" if held.startswith("sent:") else "pending"

    def confirm_answer(self, message_id: str, owner: str) -> None:
        with self._lock:
            if self._answers.get(message_id) == f"pending:{owner}":
                self._answers[message_id] = f"sent:{owner}"

    def release_answer(self, message_id: str, owner: str) -> None:
        with self._lock:
            if self._answers.get(message_id) == f"pending:{owner}":
                del self._answers[message_id]

    def answered(self, message_id: str) -> bool:
        with self._lock:
            return self._answers.get(message_id, "").startswith("sent:")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
