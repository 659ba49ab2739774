"""A gate without a broker for tests: real git and pytest, in-memory state, and a
sender that records what the orchestrator would receive. Tests take it as the `world`
fixture (tests/conftest.py), bound to their tmp_path."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from worker.contracts import parse_contracts
from worker.errors import EventDeliveryError
from worker.pipeline.runner import GateContext
from worker.settings import Settings
from worker.state import MemoryState


@dataclass
class RecordingSender:
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    broken: bool = False

    def send(self, task_name: str, kwargs: dict[str, Any]) -> None:
        if self.broken:
            raise EventDeliveryError("broker away")
        self.sent.append((task_name, kwargs))


@dataclass
class World:
    ctx: GateContext
    sender: RecordingSender
    alerts: list[str]
    state: MemoryState
    origins: Path


class WorldFactory(Protocol):
    """The `world` fixture: `world(contracts, **overrides)` under the test's tmp_path."""

    def __call__(self, contracts: dict[str, Any] | None = None, **overrides: Any) -> World: ...


def world(tmp_path: Path, contracts: dict[str, Any] | None = None, **overrides: Any) -> World:
    origins = tmp_path / "origins"
    origins.mkdir(exist_ok=True)
    defaults: dict[str, Any] = {
        "repos": ",".join(["passing", "failing", *(contracts or {})]),
        "smoke_enabled": False,
        "workdir": str(tmp_path / "work"),
        "git_url_template": str(origins / "{repo}.git"),
        "infra_max_retries": 1,
        "contracts_file": "",
    }
    settings = Settings(**(defaults | overrides))
    repos = {"passing": {"smoke_enabled": False}, "failing": {"smoke_enabled": False}}
    repos.update(contracts or {})
    parsed = parse_contracts({"repos": repos}, settings)
    sender, state = RecordingSender(), MemoryState()
    alerts: list[str] = []
    ctx = GateContext(
        settings=settings,
        contracts=parsed,
        state=state,
        events=sender,
        alert=alerts.append,
        today=lambda: date(2026, 11, 24),
    )
    return World(ctx, sender, alerts, state, origins)


def job(repo: str, task_id: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "repo": repo,
        "work_item_id": "WI-5",
        "branch": "feature/x",
        "agent": "tester",
        "stage": "testing",
        **extra,
    }
