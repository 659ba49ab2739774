"""Which view a job's commands get: bubblewrap's (worker/containment/bwrap.py) when
containment is on and works here, else none (the worker's own view and user); and
which warm interpreter its suites fork from."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from worker.containment.bwrap import SuiteView, bwrap_missing, interpreter_paths
from worker.containment.cgroup import JobCgroup, open_job_cgroup, remove_stale_cgroups
from worker.containment.sandbox import warm_interpreter, warm_start_environment
from worker.containment.slot import Slot, process_slot
from worker.containment.warm import (
    MAX_CONTAINED,
    MAX_UNCONTAINED,
    WarmPytest,
    contained_warm_pytest,
)
from worker.containment.warm_jail import WarmJail
from worker.contracts import TestContract
from worker.insuite import HERE as INSUITE_DIR
from worker.settings import Settings

logger = logging.getLogger("testgate.containment")

_warned: set[str] = set()
# A contained warm interpreter's own processes, besides the suite's limit: bwrap's
# monitor, the sandbox's init and the zygote.
_JAIL_OWN_PIDS = 3
_JAIL_CGROUP = "warm-p"  # + the pool process's pid: whose warm interpreter it holds


def _owner_gone(name: str) -> bool:
    """Whether the pool process named in a warm interpreter's cgroup has exited (its
    cgroup stays when it was killed rather than shut down)."""
    pid = name.removeprefix(_JAIL_CGROUP).partition("-")[0]
    return pid.isdigit() and not Path(f"/proc/{pid}").exists()


def containment_missing(settings: Settings) -> str | None:
    """What keeps suites from being contained here; None when they are (or when
    containment is off, which is the operator's choice and logged at start)."""
    if settings.containment == "off":
        return None
    return bwrap_missing()


def suite_view(
    settings: Settings, contract: TestContract, python: str, mirror: Path
) -> SuiteView | None:
    """The view of one job's commands, or None when they run uncontained."""
    if settings.containment == "off":
        return None
    missing = bwrap_missing()
    if missing is not None and settings.containment == "auto":
        if missing not in _warned:  # once per process, not once per job
            _warned.add(missing)
            logger.warning("suites run UNCONTAINED: %s", missing)
        return None
    readable = (mirror, INSUITE_DIR, *interpreter_paths(python))
    return SuiteView(writable=(), readable=readable, network=contract.network)


def contained(settings: Settings) -> bool:
    """Whether jobs' commands run under bubblewrap here."""
    return settings.containment != "off" and bwrap_missing() is None


def contained_warm(
    settings: Settings, view: SuiteView, python: str, slot: Slot
) -> WarmPytest | None:
    """The warm interpreter for `python` in a sandbox that reads what `view` reads and
    writes only the pool process's `slot` (None: this suite runs cold, warm.may_start),
    held with its suites by a pids cgroup of its own where there can be one."""
    readable = tuple(dict.fromkeys((*view.readable, INSUITE_DIR, *interpreter_paths(python))))

    def open_cgroup() -> JobCgroup | None:
        if settings.suite_max_pids <= 0:
            return None
        remove_stale_cgroups(_JAIL_CGROUP, _owner_gone)
        name = f"{_JAIL_CGROUP}{os.getpid()}-{secrets.token_hex(4)}"
        return open_job_cgroup(name, settings.suite_max_pids + _JAIL_OWN_PIDS)

    jail = WarmJail(slot.path, readable, view.network)
    env = warm_start_environment()
    return contained_warm_pytest(env, python, jail, open_cgroup, settings.suite_max_pids)


@dataclass(frozen=True)
class WarmKind:
    """What a suite's warm interpreter is chosen by: its interpreter and (contained)
    whether its sandbox has the network and which repository it reads."""

    python: str
    network: bool
    repo: str = ""


def suite_python(settings: Settings, contract: TestContract) -> str:
    """The interpreter a contract's suite runs with before any venv of its setup."""
    return contract.python or settings.python or sys.executable


def warm_kinds(
    settings: Settings, contracts: Sequence[TestContract], *, contained: bool, limit: int
) -> list[WarmKind]:
    """The warm interpreters worth starting before the first job, one per kind the
    contracts' suites fork from, the first `limit` (more would stop the first ones). A
    suite in a venv its setup builds has nothing to warm yet; uncontained, network and
    repository are no part of a kind."""
    kinds: list[WarmKind] = []
    for contract in contracts:
        if contract.venv:
            continue
        kind = WarmKind(
            suite_python(settings, contract),
            contract.network and contained,
            contract.repo if contained else "",
        )
        if kind not in kinds:
            kinds.append(kind)
    return kinds[:limit]


def warm_up(
    settings: Settings, contracts: Sequence[TestContract], mirror_of: Callable[[str], Path]
) -> None:
    """Start this pool process's warm interpreters while it waits for its first job, so
    that even a first suite skips pytest's start-up (contained: only for a repository
    whose mirror exists already). One that cannot start is logged; its first job starts
    it again, or runs cold."""
    if not settings.warm_pytest:
        return
    inside = contained(settings)
    slot = process_slot(settings.workdir_path) if inside else None
    if inside and slot is None:
        return
    limit = MAX_CONTAINED if inside else MAX_UNCONTAINED
    for kind in warm_kinds(settings, contracts, contained=inside, limit=limit):
        try:
            if slot is not None:
                mirror = mirror_of(kind.repo)
                if not mirror.is_dir():
                    continue  # bound when it starts: its first job starts it
                view = SuiteView(writable=(), readable=(mirror,), network=kind.network)
                contained_warm(settings, view, kind.python, slot)
            else:
                warm_interpreter(kind.python)
        except OSError as exc:
            logger.warning("no warm interpreter for %s before the first job: %s", kind, exc)
