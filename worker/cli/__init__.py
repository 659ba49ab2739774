"""The `testgate` command: run the gate embedded, make a sample repo, start a worker,
enqueue, status and metrics, watch one job, and the end-to-end demo."""

from __future__ import annotations

from typing import Any


def tester_job(
    task_id: int, repo: str, work_item_id: str, branch: str, commit: str | None = None
) -> dict[str, Any]:
    """The job an orchestrator sends for `testing`, as a plain dict (not validated:
    `testgate run` shows what a worker does with an invalid one)."""
    job: dict[str, Any] = {
        "task_id": task_id,
        "repo": repo,
        "work_item_id": work_item_id,
        "branch": branch,
        "agent": "tester",
        "stage": "testing",
    }
    if commit:
        job["commit"] = commit
    return job
