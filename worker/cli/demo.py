"""`testgate demo`: a reference orchestrator next to a testgate fleet, end to end.

The orchestrator here is what a real one needs and no more: a SQLite tasks table with a
stage per task, the gate of docs/contract.md §6 reading the report from the branch, and the
`testing -> deploy-staging` / `testing -> development` transitions, driven by the
`orchestrator.advance_stage` and `orchestrator.test_gate_handback` tasks it consumes.
It talks to testgate only through `worker.client` and the broker.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from celery.contrib.testing.worker import start_worker

from worker import client, names
from worker.cli import tester_job
from worker.cli.sample import GREEN_BRANCH, RED_BRANCH, create_sample_repo, git_identity
from worker.git.command import read_at_ref, run_git
from worker.report.orchestrator_gate import parse_tests_verdict
from worker.settings import Settings

FINAL_STAGES = ("deploy-staging", "handed-back")
Say = Callable[[str], None]


@dataclass(frozen=True)
class TaskRow:
    id: int
    repo: str
    work_item_id: str
    branch: str
    stage: str
    note: str


class StageEngine:
    """The orchestrator's tasks table and its transitions (thread-safe)."""

    def __init__(self, db_path: Path, origin_of: Callable[[str], Path], say: Say) -> None:
        self._db_path = db_path
        self._origin_of = origin_of
        self._say = say
        self._lock = threading.Lock()
        self._started = time.monotonic()
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, repo TEXT, "
                "work_item_id TEXT, branch TEXT, stage TEXT, note TEXT DEFAULT '')"
            )

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlite3.connect(self._db_path) as db:
            yield db

    def add(self, repo: str, work_item_id: str, branch: str) -> int:
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO tasks (repo, work_item_id, branch, stage) VALUES (?, ?, ?, ?)",
                (repo, work_item_id, branch, "development"),
            )
            return int(cursor.lastrowid or 0)

    def move(self, task_id: int, stage: str, note: str = "") -> None:
        with self._db() as db:
            before = db.execute("SELECT stage FROM tasks WHERE id = ?", (task_id,)).fetchone()
            db.execute("UPDATE tasks SET stage = ?, note = ? WHERE id = ?", (stage, note, task_id))
        elapsed = time.monotonic() - self._started
        arrow = f"{before[0] if before else '?'} -> {stage}"
        self._say(f"[{elapsed:5.1f}s] task {task_id}: {arrow}{f'  ({note})' if note else ''}")

    def row(self, task_id: int) -> TaskRow:
        with self._db() as db:
            found = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return TaskRow(*found)

    def rows(self) -> list[TaskRow]:
        with self._db() as db:
            return [TaskRow(*r) for r in db.execute("SELECT * FROM tasks ORDER BY id")]

    def tests_passed(self, task: TaskRow) -> bool:
        """The orchestrator's own gate: the report on the branch, read by the parser."""
        report = f"docs/work-items/{task.work_item_id}/13-test-report.md"
        text = read_at_ref(self._origin_of(task.repo), f"refs/heads/{task.branch}", report)
        return text is not None and parse_tests_verdict(text) is True

    def advance_stage(
        self, task_id: int, current_stage: str, finished_agent: str, **info: Any
    ) -> None:
        task = self.row(task_id)
        if task.stage != current_stage or finished_agent != "tester":
            self._say(f"task {task_id}: advance for {current_stage} ignored (at {task.stage})")
            return
        if self.tests_passed(task):
            self.move(task_id, "deploy-staging", f"gate PASS, {info.get('outcome')}")
        else:
            self.move(task_id, "development", f"gate FAIL, {info.get('outcome')}: rollback")

    def test_gate_handback(self, task_id: int | None, repo: str | None, reason: str) -> None:
        if task_id is not None:
            self.move(task_id, "handed-back", f"LLM tester takes over: {reason}")


def orchestrator_app(broker: str, engine: StageEngine) -> Celery:
    """A separate Celery app, as the orchestrator's own: it never imports the worker app."""
    app = Celery("reference-orchestrator", broker=broker)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=names.ORCHESTRATOR_QUEUE,
        broker_connection_retry_on_startup=True,
    )

    # Not shared: Celery would otherwise lend these functions, by name, to every app made
    # later in the same process (a second demo, a test's orchestrator).
    @app.task(name=names.ADVANCE_TASK, shared=False)  # type: ignore[untyped-decorator]
    def advance_stage(**kwargs: Any) -> None:
        engine.advance_stage(**kwargs)

    @app.task(name=names.HANDBACK_TASK, shared=False)  # type: ignore[untyped-decorator]
    def test_gate_handback(**kwargs: Any) -> None:
        engine.test_gate_handback(**kwargs)

    return app


def launch_testing(engine: StageEngine, task_id: int, app: Celery, settings: Settings) -> None:
    """What the orchestrator's launch_job does on `testing`: intercept or fall back."""
    task = engine.row(task_id)
    engine.move(task_id, "testing")
    job = tester_job(task.id, task.repo, task.work_item_id, task.branch)
    if client.should_intercept(job, settings):
        client.enqueue(job, app=app, settings=settings)
    else:
        engine.move(task_id, "handed-back", "not intercepted: the LLM tester runs")


def developer_fixes(repo: Path, branch: str, files: dict[str, str], say: Say) -> None:
    """Play the developer agent: commit a fix on `branch` of the sample repo."""
    identity = git_identity("dev-agent", "dev@example.invalid")
    with tempfile.TemporaryDirectory(prefix="dev-") as tmp:
        tree = Path(tmp) / "tree"
        run_git(["worktree", "add", "-q", str(tree), branch], repo)
        try:
            for rel, text in files.items():
                (tree / rel).write_text(text)
            run_git(["commit", "-qam", "fix after the test gate"], tree, env=identity)
        finally:
            run_git(["worktree", "remove", "--force", str(tree)], repo)
    say(f"developer agent pushed a fix to {branch}")


FIXED_CALC = (
    "def add(a: int, b: int) -> int:\n    return a + b\n\n\n"
    "def subtract(a: int, b: int) -> int:\n    return a - b\n"
)


def run_demo(
    *,
    broker: str | None = None,
    workdir: Path | None = None,
    say: Say = print,
    timeout_s: float = 180,
) -> list[TaskRow]:
    """Three tasks through the loop; returns the final table. With `broker`, jobs go to
    a real fleet, which must read the repos from `<workdir>/repos/{repo}`."""
    with ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tg-demo-")))
        repos = root / "repos"
        sample = create_sample_repo(repos / "sample")
        broker_url = broker or "memory://localhost/"
        settings = Settings(
            repos="sample",
            self_repo="sample",
            smoke_enabled=False,
            contracts_file="",
            git_url_template=str(repos / "{repo}"),
            workdir=str(root / "work"),
            broker_url=broker_url,
            infra_retry_delay_s=1,
            result_backend="cache+memory://" if broker is None else Settings().result_backend,
        )
        engine = StageEngine(root / "orchestrator.sqlite3", lambda repo: repos / repo, say)
        orchestrator = orchestrator_app(broker_url, engine)
        if broker is None:
            from worker.cli.embedded import embedded_fleet

            stack.enter_context(embedded_fleet(settings))
            say("embedded testgate fleet: 2 workers on the in-memory broker")
        else:
            say(
                f"jobs go to the fleet on {broker}; it must have "
                f"TESTGATE_GIT_URL_TEMPLATE={repos}/{{repo}} and TESTGATE_REPOS=sample"
            )
        # Started after the fleet: started before it, this in-process worker received
        # nothing (observed with two of Celery's test workers in one process).
        stack.enter_context(
            start_worker(
                orchestrator,
                pool="threads",
                concurrency=1,
                perform_ping_check=False,
                queues=[names.ORCHESTRATOR_QUEUE],
            )
        )
        green = engine.add("sample", "WI-1", GREEN_BRANCH)
        red = engine.add("sample", "WI-2", RED_BRANCH)
        stale = engine.add("sample", "WI-3", GREEN_BRANCH)
        for task_id in (green, red):
            engine.move(task_id, "review")
            launch_testing(engine, task_id, orchestrator, settings)
        # An orchestrator whose config is stale sends a job testgate must not run.
        engine.move(stale, "testing")
        orchestrator.send_task(
            names.RUN_TEST_GATE,
            queue=names.TESTS_QUEUE,
            kwargs=tester_job(stale, "docs-site", "WI-3", GREEN_BRANCH),
        )
        _drive(engine, sample, red, orchestrator, settings, timeout_s, say)
        rows = engine.rows()
    _print_table(rows, say)
    return rows


def _drive(
    engine: StageEngine,
    sample: Path,
    red: int,
    app: Celery,
    settings: Settings,
    timeout_s: float,
    say: Say,
) -> None:
    """Wait for every task to settle; a rolled-back task gets one developer fix."""
    deadline = time.monotonic() + timeout_s
    fixed = False
    while time.monotonic() < deadline:
        if not fixed and engine.row(red).stage == "development":
            developer_fixes(sample, RED_BRANCH, {"calc.py": FIXED_CALC}, say)
            engine.move(red, "review")
            launch_testing(engine, red, app, settings)
            fixed = True
        if all(row.stage in FINAL_STAGES for row in engine.rows()):
            return
        time.sleep(0.1)
    say(f"gave up waiting after {timeout_s:.0f}s")


def _print_table(rows: list[TaskRow], say: Say) -> None:
    say("")
    say(f"{'task':<5} {'work item':<10} {'branch':<18} {'stage':<15} last transition")
    for row in rows:
        say(f"{row.id:<5} {row.work_item_id:<10} {row.branch:<18} {row.stage:<15} {row.note}")
