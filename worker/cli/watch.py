"""`testgate watch TASK`: a live progress bar for one tester job, from the result backend."""

from __future__ import annotations

import time
from typing import Any, TextIO

from celery import Celery
from celery.result import AsyncResult

BAR_WIDTH = 30
POLL_S = 0.5


def render_bar(meta: dict[str, Any]) -> str:
    """`[#########.....] 9/14 tests, 1 failed` (pure)."""
    total, done, failed = meta.get("total"), int(meta.get("done", 0)), int(meta.get("failed", 0))
    if not total:
        return f"[{'.' * BAR_WIDTH}] collecting... {done} run, {failed} failed"
    filled = min(BAR_WIDTH, BAR_WIDTH * done // int(total))
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} tests, {failed} failed"


def watch(task_id: str, app: Celery, out: TextIO, *, timeout_s: float = 3600) -> str:
    """Print the job's progress until it ends; return its final state."""
    result = AsyncResult(task_id, app=app)
    deadline = time.monotonic() + timeout_s
    shown = ""
    interactive = out.isatty()
    while time.monotonic() < deadline:
        state = result.state
        if state == "PROGRESS" and isinstance(result.info, dict):
            line = render_bar(result.info)
            if line != shown:
                out.write(("\r" if interactive else "") + line + ("" if interactive else "\n"))
                out.flush()
                shown = line
        elif result.ready():
            summary = result.info if isinstance(result.info, dict) else {"detail": result.info}
            out.write(
                ("\n" if interactive and shown else "")
                + f"{state}: {summary.get('kind', '')} {summary.get('detail', '')}\n"
            )
            return str(state)
        time.sleep(POLL_S)
    out.write(f"\nstill running after {timeout_s:.0f}s\n")
    return "TIMEOUT"
