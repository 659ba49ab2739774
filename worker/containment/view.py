"""Which view a job's commands get: bubblewrap's (worker/containment/bwrap.py) when
containment is on and works here, else none (the worker's own view and user)."""

from __future__ import annotations

import logging
from pathlib import Path

from worker.containment.bwrap import SuiteView, bwrap_missing, interpreter_paths
from worker.contracts import TestContract
from worker.insuite import HERE as INSUITE_DIR
from worker.settings import Settings

logger = logging.getLogger("testgate.containment")

_warned: set[str] = set()


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
    return SuiteView(
        writable=(),
        readable=(mirror, INSUITE_DIR, *interpreter_paths(python)),
        network=contract.network,
    )
