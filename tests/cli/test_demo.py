"""`testgate demo`: the reference orchestrator and an embedded fleet, no services."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.cli.demo import run_demo

pytestmark = pytest.mark.timeout(200)


def test_the_demo_moves_every_task_through_its_stages(tmp_path: Path) -> None:
    lines: list[str] = []
    rows = run_demo(workdir=tmp_path, say=lines.append)
    stages = {row.work_item_id: row.stage for row in rows}
    assert stages == {"WI-1": "deploy-staging", "WI-2": "deploy-staging", "WI-3": "handed-back"}
    log = "\n".join(lines)
    # The failing branch was rolled back to development, fixed, and tested again.
    assert "task 2: testing -> development  (gate FAIL, code-fail: rollback)" in log
    assert "developer agent pushed a fix" in log
    assert log.index("task 2: testing -> development") < log.index(
        "task 2: testing -> deploy-staging"
    )
    assert "not in testgate's scope" in log
