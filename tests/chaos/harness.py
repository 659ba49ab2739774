"""What the chaos tests share (their fixture is in conftest.py): the brokers and Redis
databases they use, the suites they run, and `Chaos`, one test's fleet."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.fleet import Orchestrator, WorkerProcess, job_kwargs
from testkit.repofactory import make_origin
from tests.httpfixtures import Recorder

REDIS = os.environ.get("TESTGATE_TEST_REDIS", "redis://127.0.0.1:6379")
RABBITMQ = os.environ.get("TESTGATE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
BROKER_DB, STATE_DB = 10, 11
BRANCH = "feature/x"
BROKERS = {"redis": f"{REDIS}/{BROKER_DB}", "rabbitmq": RABBITMQ}


# The pool process running the suite: its parent, or, when the suite was forked from
# the pool process's warm interpreter, its grandparent.
POOL_PROCESS = (
    "def pool_process():\n"
    "    pid = os.getppid()\n"
    "    with open(f'/proc/{pid}/cmdline', 'rb') as cmdline:\n"
    "        if b'insuite/zygote.py' in cmdline.read():\n"
    "            with open(f'/proc/{pid}/stat') as stat:\n"
    "                pid = int(stat.read().rsplit(')', 1)[1].split()[1])\n"
    "    return pid\n\n\n"
)


def slow_suite(pid_file: Path, seconds: float) -> str:
    """A passing test that records its pid and its pool process's."""
    return (
        "import os, time\n\n\n" + POOL_PROCESS + "def test_slow():\n"
        f"    with open({str(pid_file)!r}, 'a') as out:\n"
        "        out.write(f'{os.getpid()} {pool_process()}\\n')\n"
        f"    time.sleep({seconds})\n"
    )


POISON = (
    "import os, signal, time\n\n\n"
    + POOL_PROCESS
    + "def test_kills_the_process_that_runs_the_suite():\n"
    "    os.kill(pool_process(), signal.SIGKILL)\n"
    "    time.sleep(60)\n"
)


@dataclass
class Chaos:
    broker_name: str
    broker: str
    tmp: Path
    env: dict[str, str]
    orchestrator: Orchestrator
    alerts: Recorder
    workers: list[WorkerProcess]

    def origin(self, repo: str, files: dict[str, str]) -> Path:
        return make_origin(self.tmp / "origins", repo, files, branch=BRANCH)

    def start_worker(
        self, concurrency: int = 1, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        name = f"chaos{len(self.workers)}-{uuid.uuid4().hex[:6]}"
        worker = WorkerProcess.start(
            {**self.env, **(env or {})}, self.tmp / f"{name}.log", name, concurrency
        )
        self.workers.append(worker)
        worker.wait_ready(self.orchestrator.app)
        return worker

    def job(self, task_id: int, repo: str, **extra: Any) -> dict[str, Any]:
        return job_kwargs(task_id, repo, branch=BRANCH, **extra)

    def logs(self) -> str:
        return "\n".join(w.tail() for w in self.workers)
