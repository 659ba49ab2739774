"""One delivery of one valid, in-scope job: what the steps of its pipeline share (the
job, its contract, the worker's context, the delivery) and what they learn on the way.
Plain data; the steps are functions over it, in the order runner.py gives them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.containment.slot import Slot
from worker.contracts import TestContract
from worker.job import Job
from worker.observe.phases import JobPhases
from worker.pipeline.announce import Answer
from worker.pipeline.context import GateContext
from worker.settings import Settings
from worker.suite.progress import Progress


@dataclass(eq=False)
class JobRun:
    job: Job
    contract: TestContract
    ctx: GateContext
    attempt: int  # 0 for the first try, as Celery's request.retries
    delivery_id: str  # the message (Celery task id), same on redelivery
    progress: Callable[[Progress], None] | None = None
    phases: JobPhases = field(default_factory=JobPhases)  # where this delivery's time goes
    started: float = field(init=False, default_factory=time.monotonic)
    # This delivery's name in the lease and the answer guard: unique per delivery.
    answer: Answer = field(init=False)
    # Marks every process of the job; the same on a redelivery of the same message to
    # this host's workdir, so the redelivery can kill what a dead predecessor left
    # running, and never another workdir's (two fleets, or test runs, on one host).
    cookie: str = field(init=False)
    # Until the delivery count says otherwise: sweep first.
    redelivered: bool = field(init=False, default=True)
    # Where the open checkout lives, when in a slot.
    slot: Slot | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.answer = Answer.of(self.delivery_id)
        marker = f"{self.settings.workdir_path}\0{self.delivery_id}"
        self.cookie = hashlib.sha256(marker.encode()).hexdigest()[:32]

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def budget_spent(self) -> bool:
        return self.attempt >= self.settings.infra_max_retries
