"""A sharded job without a broker, for the tests that run one (tests/pipeline/
test_sharded_flow.py, tests/celery_adapter/test_retry_paths.py): the dispatcher runs
each shard and the merge in this process, as the chord would on the fleet, with the
shard queue on fakeredis (real Lua)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import fakeredis

from tests.gateworld import World, WorldFactory
from worker.job import Job
from worker.pipeline.context import GateResult
from worker.pipeline.sharded import finish_sharded, run_shard
from worker.shards.protocol import Deal, ShardResult
from worker.shards.queue import ShardQueue


@dataclass
class InlineSharding:
    """Runs the shards one after another, then the merge. `order` says which shards
    pull (a shard index may appear twice: it started again)."""

    world: World | None = None
    queue: ShardQueue = field(default_factory=lambda: ShardQueue(fakeredis.FakeRedis()))
    deals: list[Deal] = field(default_factory=list)
    merged: list[GateResult] = field(default_factory=list)
    order: list[int] | None = None
    # What happened before the shards we run here: an earlier delivery that pulled.
    before: Callable[[Deal, ShardQueue], None] | None = None

    def dispatch(self, job: Job, deal: Deal) -> None:
        assert self.world is not None
        ctx = self.world.ctx
        if self.before is not None:
            self.before(deal, self.queue)
        self.deals.append(deal)
        by_index: dict[int, ShardResult] = {}
        for n, i in enumerate(self.order or range(deal.shards)):
            by_index[i] = run_shard(
                job, deal.commit, i, deal.deal_id, ctx, attempt=0, delivery_id=f"s{i}-{n}"
            )
        self.merged.append(
            finish_sharded(
                job,
                deal,
                list(by_index.values()),
                ctx,
                # Each dispatch's merge is a message of its own, as Celery ids are.
                delivery_id=f"merge-{len(self.merged)}",
            )
        )


def sharded_world(
    world: WorldFactory, shards: int | str, **contract: Any
) -> tuple[World, InlineSharding]:
    """A `world` whose repo `split` has `shards`, dispatched by an InlineSharding."""
    w = world({"split": {"smoke_enabled": False, "shards": shards, **contract}})
    sharding = InlineSharding()
    w.ctx = replace(w.ctx, shards=sharding)
    sharding.world = w
    return w, sharding


def module_of_tests(names: list[str], failing: str = "") -> str:
    return "".join(f"def {name}():\n    assert {name != failing}\n\n\n" for name in names)
