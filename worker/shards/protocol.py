"""What crosses Redis and the broker in a sharded job, validated on the way in: a
batch in the queue, a deal (sent to the merge), a shard's result (its task's return
value). Strict: a value of the wrong type is refused, never coerced."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class Batch(_Wire):
    """Tests one shard runs in one pytest process."""

    number: int  # its place in the deal, from 0
    test_ids: tuple[str, ...]


class Deal(_Wire):
    """A job split into `batches` (in dealing order) on the queue `deal_id`, for
    `shards` shard tasks to pull at `commit`."""

    commit: str
    deal_id: str
    shards: int
    batches: tuple[tuple[str, ...], ...]
    ran_first: tuple[str, ...] = ()  # failed on the branch's last run: the first batch

    def describe(self) -> str:
        tests = sum(len(b) for b in self.batches)
        return (
            f"{tests} tests at {self.commit} sent as {self.shards} shards "
            f"pulling {len(self.batches)} batches"
        )


class ShardResult(_Wire):
    """What one shard ran: every batch it pulled, folded (worker.shards.merge)."""

    index: int
    ran: bool  # False: a batch produced no exit code (checkout, setup, spawn, timeout)
    exit_code: int | None = None
    duration_s: float = 0.0
    cases: dict[str, tuple[str, float]] = {}  # test id -> (outcome, seconds), per the probe
    counts: dict[str, int] = {}  # the batches' session records, added up per outcome
    status: int = 0  # pytest's own exit status in those records: the first non-zero
    evidence: str = ""  # why a batch's records do not support its exit status 0
    problem: str = ""  # why it did not run
    output_tail: str = ""
    attempts: int = 1
    final: bool = False  # did not run, and running it again cannot help
