"""A sharded job without a broker, for the tests that run one (tests/pipeline/
test_sharded_flow.py, tests/celery_adapter/test_retry_paths.py): the dispatcher runs
each shard and the merge in this process, as the chord would on the fleet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tests.gateworld import World, WorldFactory
from worker.job import Job
from worker.pipeline.context import GateResult
from worker.pipeline.shard_merge import finish_sharded, run_dealt_shard, run_shard
from worker.pipeline.shard_plan import ShardPlan, ShardResult
from worker.shard_queue import MemoryShardQueue, ShardQueue


@dataclass
class InlineSharding:
    """Runs the shards one after another, then the merge. With a deal, `order` says
    which shards pull (a shard index may appear twice: it started again)."""

    world: World | None = None
    plans: list[list[list[str]]] = field(default_factory=list)
    merged: list[GateResult] = field(default_factory=list)
    splits: list[ShardPlan] = field(default_factory=list)
    order: list[int] | None = None
    # What happened before the shards we run here: an earlier delivery that pulled.
    before: Callable[[ShardPlan, ShardQueue], None] | None = None

    def dispatch(self, job: Job, split: ShardPlan) -> None:
        assert self.world is not None
        ctx = self.world.ctx
        if self.before is not None and ctx.shard_queue is not None:
            self.before(split, ctx.shard_queue)
        plan = [list(ids) for ids in split.plan]
        self.plans.append(plan)
        self.splits.append(split)
        if not split.deal_id:
            results = [
                run_shard(job, split.commit, i, ids, ctx, attempt=0, delivery_id=f"shard-{i}")
                for i, ids in enumerate(plan)
            ]
        else:
            by_index: dict[int, ShardResult] = {}
            for n, i in enumerate(self.order or range(split.shards)):
                by_index[i] = run_dealt_shard(
                    job, split.commit, i, split.deal_id, ctx, attempt=0, delivery_id=f"s{i}-{n}"
                )
            results = list(by_index.values())
        self.merged.append(
            finish_sharded(
                job,
                split.commit,
                plan,
                results,
                ctx,
                # Each dispatch's merge is a message of its own, as Celery ids are.
                delivery_id=f"merge-{len(self.merged)}",
                shard_count=split.shard_count,
                ran_first=split.ran_first,
                deal_id=split.deal_id,
            )
        )


def sharded_world(
    world: WorldFactory, shards: int | str, *, dealt: bool = True, **contract: Any
) -> tuple[World, InlineSharding]:
    """A `world` whose repo `split` has `shards`, dispatched by an InlineSharding."""
    w = world({"split": {"smoke_enabled": False, "shards": shards, **contract}})
    sharding = InlineSharding()
    w.ctx = replace(w.ctx, shards=sharding, shard_queue=MemoryShardQueue() if dealt else None)
    sharding.world = w
    return w, sharding


def module_of_tests(names: list[str], failing: str = "") -> str:
    return "".join(f"def {name}():\n    assert {name != failing}\n\n\n" for name in names)
