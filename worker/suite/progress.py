"""Live progress of a running suite: tests done / total / failed so far.

The in-suite probe (worker/insuite/plugins/testgate_probe.py) keeps a small JSON file
up to date, in the batches it writes its records in; the worker reads it about once a
second and publishes it as the task's PROGRESS state (seen by Flower and by `testgate
watch`). It never changes what the suite does or how it exits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger("testgate.progress")

PROGRESS_FILE_VAR = "GATE_PROGRESS_FILE"


@dataclass(frozen=True)
class Progress:
    total: int | None
    done: int
    failed: int

    def as_meta(self) -> dict[str, Any]:
        return asdict(self)


def parse_progress(text: str | None) -> Progress | None:
    """The latest progress, or None when there is none (yet) or it is unreadable."""
    try:
        data = json.loads(text or "")
        return Progress(total=data.get("total"), done=int(data["done"]), failed=int(data["failed"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class ProgressWatcher:
    """Calls `report` with each new progress; what `run_bounded`'s tick runs."""

    def __init__(self, read: Callable[[], str | None], report: Callable[[Progress], None]) -> None:
        self._read = read  # the progress file's text, read hostile-safe
        self._report = report
        self._last: Progress | None = None

    def __call__(self) -> None:
        current = parse_progress(self._read())
        if current is not None and current != self._last:
            self._last = current
            try:
                self._report(current)
            except Exception as exc:  # noqa: BLE001 - a progress sink must not stop a suite
                logger.warning("progress not published: %s", exc)
