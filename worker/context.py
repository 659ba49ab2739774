"""What a job runs with (the outside world, built once per worker) and what it ends in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from worker.contracts import Contracts
from worker.events import Advance, EventSender
from worker.settings import Settings
from worker.state import GateState

GateKind = Literal["advanced", "handed-back", "deferred", "duplicate", "already-done"]


@dataclass(frozen=True)
class GateContext:
    """Everything a job needs from the outside world, built once per worker."""

    settings: Settings
    contracts: Contracts | None  # None: the contracts file is broken (logged at start)
    state: GateState
    events: EventSender
    alert: Callable[[str], object]
    today: Callable[[], date] = date.today


@dataclass(frozen=True)
class GateResult:
    kind: GateKind
    detail: str
    advance: Advance | None = None

    def as_dict(self) -> dict[str, Any]:
        advance = self.advance.kwargs() if self.advance else None
        return {"kind": self.kind, "detail": self.detail, "advance": advance}
