"""The shard queue on Redis (fakeredis, real Lua): pulls in dealing order, a restarted
shard's batches dealt again, failures counted over shards, what it stores validated."""

from __future__ import annotations

import fakeredis
import pytest

from worker.errors import StateUnavailable
from worker.shards.protocol import Batch
from worker.shards.queue import ShardQueue


@pytest.fixture
def queue() -> ShardQueue:
    return ShardQueue(fakeredis.FakeRedis(), prefix="t:")


def pulled(queue: ShardQueue, shard: int) -> tuple[int, tuple[str, ...]] | None:
    batch = queue.claim("d", shard)
    return None if batch is None else (batch.number, batch.test_ids)


def test_shards_pull_batches_in_dealing_order_until_none_is_left(queue: ShardQueue) -> None:
    queue.deal("d", [["a", "b"], ["c"], ["d"]], ttl_s=60)
    assert queue.claim("d", 0) == Batch(number=0, test_ids=("a", "b"))
    assert pulled(queue, 1) == (1, ("c",))
    assert pulled(queue, 1) == (2, ("d",))
    assert pulled(queue, 0) is None and pulled(queue, 1) is None
    assert queue.claim("other", 0) is None


def test_a_shard_that_starts_again_has_its_earlier_batches_dealt_again(
    queue: ShardQueue,
) -> None:
    queue.deal("d", [["a"], ["b"], ["c"], ["d"]], ttl_s=60)
    assert [pulled(queue, 0), pulled(queue, 1), pulled(queue, 0)] == [
        (0, ("a",)),
        (1, ("b",)),
        (2, ("c",)),
    ]
    # Shard 0's process died: whatever it ran is lost with it; shard 1's is not.
    assert queue.take_back("d", 0) == 2
    again = [pulled(queue, 1), pulled(queue, 0), pulled(queue, 0)]
    assert again == [(0, ("a",)), (2, ("c",)), (3, ("d",))]
    assert pulled(queue, 1) is None
    assert queue.take_back("d", 1) == 2  # b and a, both last pulled by shard 1
    assert queue.take_back("d", 1) == 0


def test_failures_add_up_over_shards_and_a_forgotten_deal_is_empty(queue: ShardQueue) -> None:
    queue.deal("d", [["a"]], ttl_s=60)
    assert queue.add_failures("d", 0) == 0
    assert queue.add_failures("d", 2) == 2 and queue.add_failures("d", 1) == 3
    queue.forget("d")
    assert queue.claim("d", 0) is None


def test_a_batch_that_does_not_validate_is_refused_not_run() -> None:
    client = fakeredis.FakeRedis()
    queue = ShardQueue(client, prefix="t:")
    queue.deal("d", [["a"]], ttl_s=60)
    client.hset("t:deal:d:batches", "0", '{"number": 0, "test_ids": ["a", 7]}')
    with pytest.raises(StateUnavailable, match="unreadable"):
        queue.claim("d", 0)
