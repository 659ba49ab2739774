"""What a job runs with (the outside world, built once per worker) and what it ends in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol

from worker.contracts import Contracts
from worker.job import Job
from worker.notify.events import Advance, EventSender
from worker.settings import Settings
from worker.shards.protocol import Deal
from worker.shards.queue import ShardQueue
from worker.state import GateState

GateKind = Literal["advanced", "handed-back", "deferred", "duplicate", "already-done", "sharded"]


class ShardDispatcher(Protocol):
    queue: ShardQueue  # where a job deals its batches and its shards pull them

    def dispatch(self, job: Job, deal: Deal) -> None:
        """Start `deal.shards` shard tasks that pull the dealt batches and a callback
        that merges them and announces the verdict. Raises EventDeliveryError if the
        broker refuses."""
        ...


@dataclass(frozen=True)
class GateContext:
    """Everything a job needs from the outside world, built once per worker."""

    settings: Settings
    contracts: Contracts | None  # None: the contracts file is broken (logged at start)
    state: GateState
    events: EventSender
    alert: Callable[[str], object]
    today: Callable[[], date] = date.today
    shards: ShardDispatcher | None = None  # None: a sharded contract runs as one suite


@dataclass(frozen=True)
class GateResult:
    kind: GateKind
    detail: str
    advance: Advance | None = None

    def outcome_and_verdict(self) -> tuple[str, str | None]:
        """For the trace: the verdict's outcome and result, or this result's kind."""
        if self.advance is not None:
            return self.advance.outcome, self.advance.result
        return self.kind, None

    def as_dict(self) -> dict[str, Any]:
        advance = self.advance.kwargs() if self.advance else None
        return {"kind": self.kind, "detail": self.detail, "advance": advance}
