"""What every benchmark shares: Redis DB 12, a test origin with a clone of it, a real
worker, bare pytest runs, and a stand-in orchestrator that times advances.

The orchestrator sends jobs by task name and waits on its own queue, exactly as the
real one does; it never imports testgate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult

from testkit.fleet import ADVANCE, WorkerProcess
from testkit.repofactory import git, make_origin

REDIS_URL = "redis://127.0.0.1:6379"
BENCH_DB = 12
REPO = "bench"
TASK_NAME = "testgate.run_test_gate"
FIRST_BRANCH = "feature/x"
ADVANCE_TIMEOUT_S = 120.0


class BenchError(Exception):
    """A benchmark measured something other than what it claims (a failed job, a
    restarted pool process): its number would be wrong, so it stops instead."""


def broker_url(redis_url: str = REDIS_URL, db: int = BENCH_DB) -> str:
    return f"{redis_url}/{db}"


def flush(broker: str) -> None:
    """Empty the benchmark's own DB: queues, results, ledger, locks."""
    redis.Redis.from_url(broker).flushdb()


@dataclass(frozen=True)
class BenchRepo:
    """A bare origin whose feature branches all hold the suite, and a clone of one."""

    origin: Path
    checkout: Path
    branches: tuple[str, ...]


def make_bench_repo(root: Path, files: Mapping[str, str], branches: int = 1) -> BenchRepo:
    """Jobs that run at the same time each get a branch of their own, as the
    orchestrator's tasks do: two reports pushed to one branch would reject each other."""
    origin = make_origin(root, REPO, files, branch=FIRST_BRANCH)
    names = [FIRST_BRANCH] + [f"feature/job-{i:02d}" for i in range(1, branches)]
    for name in names[1:]:
        git(origin, "branch", name, FIRST_BRANCH)
    checkout = root / "checkout"
    git(root, "clone", "-q", "-b", FIRST_BRANCH, str(origin), str(checkout))
    return BenchRepo(origin, checkout, tuple(names))


# The suite's environment per variant. "installed": pytest loads every plugin of the
# worker's interpreter, as a worker does by default. "none": third-party plugins are
# not auto-loaded, as in the production image (deploy/Dockerfile installs none); the
# suite command names testgate's own plugin with -p, so it still loads.
SUITE_ENVS: dict[str, dict[str, str]] = {
    "installed": {},
    "none": {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
}


def worker_env(root: Path, broker: str, suite_env: Mapping[str, str]) -> dict[str, str]:
    """The worker's settings: broker, backend and state all in the benchmark's DB; a
    contracts file only when the suite needs an environment of its own."""
    env = {
        **os.environ,
        "TESTGATE_BROKER_URL": broker,
        "TESTGATE_RESULT_BACKEND": broker,
        "TESTGATE_REPOS": REPO,
        "TESTGATE_SELF_REPO": REPO,
        "TESTGATE_SMOKE_ENABLED": "false",
        "TESTGATE_KEY_PREFIX": "bench:",
        "TESTGATE_WORKDIR": str(root / "work"),
        "TESTGATE_GIT_URL_TEMPLATE": str(root / "{repo}.git"),
    }
    if suite_env:
        contracts = root / "contracts.toml"
        pairs = ", ".join(f"{key} = {json.dumps(value)}" for key, value in suite_env.items())
        contracts.write_text(f'[repos.{REPO}]\ntarget = "tests/"\nenv = {{{pairs}}}\n')
        env["TESTGATE_CONTRACTS_FILE"] = str(contracts)
    return env


@contextmanager
def running_worker(
    root: Path,
    broker: str,
    app: Celery,
    concurrency: int = 1,
    suite_env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[WorkerProcess]:
    """`celery -A worker worker -c <concurrency>` until the block ends; its log's tail
    goes to stderr if the block fails. Workers of one root share the mirror.
    `extra_env` goes on top of the worker's settings (another contracts file, say)."""
    log = root / f"worker-c{concurrency}.log"
    env = {**worker_env(root, broker, suite_env or {}), **(extra_env or {})}
    worker = WorkerProcess.start(env, log, f"bench-c{concurrency}", concurrency)
    try:
        worker.wait_ready(app)
        yield worker
    except BaseException:
        print(worker.tail(), file=sys.stderr)
        raise
    finally:
        worker.stop()


@dataclass(frozen=True)
class PytestRun:
    wall_s: float
    cpu_s: float  # user + system of pytest and everything it waited for


def bare_pytest(
    checkout: Path,
    runs: int,
    extra_args: Sequence[str] = (),
    suite_env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> list[PytestRun]:
    """`python -m pytest tests/ -q` in `checkout`, as the worker runs it, `runs` times."""
    done = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [python, "-m", "pytest", "tests/", "-q", "-p", "no:cacheprovider", *extra_args],
            cwd=checkout,
            env={**os.environ, **(suite_env or {})},
            capture_output=True,
            check=True,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        done.append(PytestRun(wall, cpu))
    return done


@dataclass
class TimedOrchestrator:
    """Sends jobs by name and times until their advance arrives on its queue."""

    app: Celery
    queue: Any  # kombu SimpleQueue on the orchestrator's queue
    next_task_id: int = 1
    pending: list[AsyncResult] = field(default_factory=list)

    @classmethod
    @contextmanager
    def connect(cls, broker: str) -> Iterator[TimedOrchestrator]:
        app = Celery("bench-orchestrator", broker=broker, backend=broker)
        with app.connection_for_read() as conn, conn.SimpleQueue("orchestrator") as queue:
            orchestrator = cls(app, queue)
            try:
                yield orchestrator
            finally:
                orchestrator.forget_pending()

    def send(self, branch: str) -> int:
        """Enqueue one job; every job has its own task id, because a repeated (task id,
        commit) is never advanced twice."""
        task_id = self.next_task_id
        self.next_task_id += 1
        result = self.app.send_task(
            TASK_NAME,
            queue="tests",
            kwargs={
                "task_id": task_id,
                "repo": REPO,
                "work_item_id": f"WI-{task_id}",
                "branch": branch,
                "agent": "tester",
                "stage": "testing",
            },
        )
        self.pending.append(result)
        return task_id

    def receive_advance(self) -> dict[str, Any]:
        """The next advance; a FAIL or an unpushed report means the job did not do
        the work being measured."""
        message = self.queue.get(block=True, timeout=ADVANCE_TIMEOUT_S)
        message.ack()
        name = message.headers["task"]
        _args, kwargs, _embed = message.decode()
        if name != ADVANCE or kwargs.get("result") != "PASS" or not kwargs.get("report_pushed"):
            raise BenchError(f"expected a pushed PASS advance, got {name} {kwargs}")
        return dict(kwargs)

    def run_serial(self, branch: str, jobs: int) -> list[float]:
        """`jobs` jobs one at a time: seconds from enqueue to advance received, each."""
        times = []
        for _ in range(jobs):
            started = time.perf_counter()
            self.send(branch)
            self.receive_advance()
            times.append(time.perf_counter() - started)
        return times

    def run_batch(self, branches: Sequence[str], jobs: int) -> float:
        """Enqueue `jobs` jobs at once (round robin over `branches`); seconds until the
        last advance was received."""
        started = time.perf_counter()
        for i in range(jobs):
            self.send(branches[i % len(branches)])
        for _ in range(jobs):
            self.receive_advance()
        return time.perf_counter() - started

    def settle(self, quiet_s: float = 0.3) -> None:
        """Wait until every job sent has finished, cleanup included (the advance goes
        out before the worktree is removed), then a moment for the ack to be sent."""
        for result in self.pending:
            result.get(timeout=ADVANCE_TIMEOUT_S, propagate=False)
        self.forget_pending()
        time.sleep(quiet_s)

    def forget_pending(self) -> None:
        """Unsubscribe from the results sent, and from the children a sharded job's meta
        names (get() builds them, subscribed), now: the last one left would otherwise
        unsubscribe in its __del__ at interpreter exit, which raises ImportError."""
        unsubscribe = list(self.pending)
        while unsubscribe:
            result = unsubscribe.pop()
            unsubscribe.extend(result.children or [])
            self.app.backend.remove_pending_result(result)
        self.pending.clear()


def add_broker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", default=REDIS_URL)
    parser.add_argument("--db", type=int, default=BENCH_DB)


@contextmanager
def bench_session(
    args: argparse.Namespace, prefix: str = "bench-"
) -> Iterator[tuple[str, Path, TimedOrchestrator]]:
    """The broker of `add_broker_args` (its DB flushed before and after), a temporary
    root for repositories and workers, and an orchestrator connected to the broker."""
    broker = broker_url(args.redis, args.db)
    flush(broker)
    try:
        with (
            tempfile.TemporaryDirectory(prefix=prefix) as tmp_name,
            TimedOrchestrator.connect(broker) as orchestrator,
        ):
            yield broker, Path(tmp_name), orchestrator
    finally:
        flush(broker)
