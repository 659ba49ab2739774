"""The per-job queue in Redis that shards pull their batches from.

Each batch pulled is recorded against the shard that pulled it. A shard's results
travel only in its task's return value, so a shard that starts again (its process died
and the message came back, or it is retried) first puts back every batch it had
pulled: their results are gone with the dead delivery, and they are dealt again, to it
or to any shard still pulling. Whatever is never reported makes the merge fail closed.

Only the worker talks to this queue: the suite never reaches Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from pydantic import ValidationError

from worker import names
from worker.errors import StateUnavailable
from worker.shards.protocol import Batch

logger = logging.getLogger("testgate.shards")

# Pop the next batch and record who took it: one step, so two shards never take one.
_CLAIM = """
local number = redis.call('lpop', KEYS[1])
if not number then return false end
redis.call('hset', KEYS[2], number, ARGV[1])
local ttl = redis.call('ttl', KEYS[3])
if ttl > 0 then redis.call('expire', KEYS[2], ttl) end
return redis.call('hget', KEYS[3], number)
"""

# Put back, at the front, every batch the shard had pulled.
_TAKE_BACK = """
local claimed = redis.call('hgetall', KEYS[2])
local back = {}
for i = 1, #claimed, 2 do
  if claimed[i + 1] == ARGV[1] then table.insert(back, tonumber(claimed[i])) end
end
table.sort(back, function(a, b) return a > b end)
for _, number in ipairs(back) do
  redis.call('hdel', KEYS[2], number)
  redis.call('lpush', KEYS[1], number)
end
return #back
"""


class ShardQueue:
    def __init__(self, client: redis.Redis, prefix: str = names.KEY_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._take_back = client.register_script(_TAKE_BACK)

    @classmethod
    def from_url(cls, url: str, prefix: str = names.KEY_PREFIX) -> ShardQueue:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        return cls(client, prefix)

    def deal(self, deal_id: str, batches: Sequence[Sequence[str]], ttl_s: int) -> None:
        """Queue `batches` in this order for the shards of `deal_id`."""
        todo, claimed, stored, failures = self._keys(deal_id)
        pipe = self._redis.pipeline()
        pipe.delete(todo, claimed, stored, failures)
        if batches:
            batch = {str(i): Batch(number=i, test_ids=tuple(b)) for i, b in enumerate(batches)}
            pipe.hset(stored, mapping={n: b.model_dump_json() for n, b in batch.items()})
            pipe.rpush(todo, *range(len(batches)))
        for key in (todo, stored):
            pipe.expire(key, ttl_s)
        self._call(pipe.execute)

    def take_back(self, deal_id: str, shard: int) -> int:
        """Deal again every batch `shard` pulled before; how many there were."""
        todo, claimed, _, _ = self._keys(deal_id)
        return int(self._call(self._take_back, keys=[todo, claimed], args=[str(shard)]))

    def claim(self, deal_id: str, shard: int) -> Batch | None:
        """The next batch for `shard`; None when none is left."""
        todo, claimed, stored, _ = self._keys(deal_id)
        found = self._call(self._claim, keys=[todo, claimed, stored], args=[str(shard)])
        if not found:
            return None
        try:
            return Batch.model_validate_json(found)
        except ValidationError as exc:
            raise StateUnavailable(f"a batch of deal {deal_id} is unreadable") from exc

    def add_failures(self, deal_id: str, count: int) -> int:
        """Count failing tests over all shards of the deal; the total so far."""
        failures = self._keys(deal_id)[3]
        pipe = self._redis.pipeline()
        pipe.incrby(failures, count)
        pipe.expire(failures, 24 * 3600)
        total, _ = self._call(pipe.execute)
        return int(total)

    def forget(self, deal_id: str) -> None:
        """Drop the deal (after the merge); never raises."""
        try:
            self._redis.delete(*self._keys(deal_id))
        except redis.RedisError as exc:
            logger.warning("deal %s not dropped (its keys expire on their own): %s", deal_id, exc)

    def _keys(self, deal_id: str) -> tuple[str, str, str, str]:
        base = f"{self._prefix}{names.DEAL_KEY}{deal_id}:"
        return f"{base}todo", f"{base}claimed", f"{base}batches", f"{base}failures"

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StateUnavailable(f"shard queue (Redis) unavailable: {exc}") from exc
