"""Real workers and a stand-in orchestrator for integration and chaos tests and the
benchmarks.

The orchestrator is a separate Celery app that never imports testgate: it sends jobs by
task name and reads what arrives on its queue, exactly as the real one would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from kombu.connection import Connection

ROOT = Path(__file__).resolve().parents[1]
ADVANCE = "orchestrator.advance_stage"
HANDBACK = "orchestrator.test_gate_handback"


def job_kwargs(
    task_id: int, repo: str, *, branch: str, work_item: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The kwargs the orchestrator sends for a task in `testing` (work item WI-<task_id>
    unless named)."""
    return {
        "task_id": task_id,
        "repo": repo,
        "work_item_id": work_item or f"WI-{task_id}",
        "branch": branch,
        "agent": "tester",
        "stage": "testing",
        **extra,
    }


@dataclass
class Orchestrator:
    """Sends jobs by task name and collects what arrives on its queue."""

    app: Celery
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def connect(cls, broker: str, backend: str) -> Orchestrator:
        app = Celery("orchestrator", broker=broker, backend=backend)
        app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            result_serializer="json",
            broker_connection_retry_on_startup=True,
        )
        return cls(app)

    def send(self, **job: Any) -> AsyncResult:
        return self.app.send_task("testgate.run_test_gate", kwargs=job, queue="tests")

    def drain(self) -> None:
        with self.app.connection_for_read() as conn, conn.SimpleQueue("orchestrator") as queue:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    return
                _args, kwargs, _embed = message.decode()
                self.received.append((str(message.headers["task"]), dict(kwargs)))
                message.ack()

    def events_for(self, task_id: int, name: str) -> list[dict[str, Any]]:
        self.drain()
        return [kw for n, kw in self.received if n == name and kw.get("task_id") == task_id]

    def wait_for_event(self, task_id: int, name: str, timeout: float = 120) -> list[dict[str, Any]]:
        """Poll the queue until at least one `name` event for `task_id` arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events_for(task_id, name)
            if found:
                return found
            time.sleep(0.1)
        raise TimeoutError(f"no {name} for task {task_id} within {timeout}s")

    def wait_done(self, result: AsyncResult, timeout: float = 120) -> dict[str, Any]:
        summary = result.get(timeout=timeout, propagate=True)
        assert isinstance(summary, dict)
        return summary

    def wait_succeeded(self, task_uuid: str, timeout: float = 120) -> dict[str, Any]:
        """The summary of the delivery that finally succeeded. A delivery that gave its
        message back stores REJECTED first; the next one overwrites it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = AsyncResult(task_uuid, app=self.app)  # never a cached earlier state
            if fresh.state == "SUCCESS":
                summary = fresh.result
                assert isinstance(summary, dict)
                return summary
            time.sleep(0.2)
        raise TimeoutError(f"task {task_uuid} did not succeed within {timeout}s")


def fleet_env(
    *,
    broker: str,
    state: str,
    prefix: str,
    workdir: Path,
    origins: Path,
    contracts: Path,
    repos: list[str],
    alert_url: str,
) -> dict[str, str]:
    """A test worker's settings: short retries, one state DB for results and state."""
    return {
        "TESTGATE_BROKER_URL": broker,
        "TESTGATE_RESULT_BACKEND": state,
        "TESTGATE_STATE_URL": state,
        "TESTGATE_KEY_PREFIX": prefix,
        "TESTGATE_WORKDIR": str(workdir),
        "TESTGATE_GIT_URL_TEMPLATE": str(origins / "{repo}.git"),
        "TESTGATE_CONTRACTS_FILE": str(contracts),
        "TESTGATE_REPOS": ",".join(repos),
        "TESTGATE_INFRA_MAX_RETRIES": "1",
        "TESTGATE_INFRA_RETRY_DELAY_S": "1",
        "TESTGATE_KILL_GRACE_S": "1",
        "TESTGATE_ALERT_WEBHOOK_URL": alert_url,
    }


def worker_command(name: str, concurrency: int = 1) -> list[str]:
    """`celery -A worker worker -Q tests`, exactly as an operator starts it."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "-Q",
        "tests",
        "-c",
        str(concurrency),
        "-l",
        "info",
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"{name}@%h",
    ]


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path = ROOT, timeout: float = 110
) -> subprocess.CompletedProcess[str]:
    """`testgate <args>` in a subprocess with `env` on top of this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli.main", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class WorkerProcess:
    """`celery -A worker worker -Q tests` in its own process group."""

    process: subprocess.Popen[bytes]
    log: Path
    name: str

    @classmethod
    def start(
        cls, env: Mapping[str, str], log: Path, name: str, concurrency: int = 1
    ) -> WorkerProcess:
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                worker_command(name, concurrency),
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(process, log, name)

    def wait_ready(self, app: Celery, timeout: float = 60) -> None:
        # Only this worker's own answer: any other worker of the test answers pings too.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited {self.process.returncode}:\n{self.tail()}")
            replies = app.control.ping(destination=[self.hostname], timeout=0.5) or []
            if any(self.hostname in reply for reply in replies):
                return
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.tail()}")

    @property
    def hostname(self) -> str:
        """The name the worker answers control commands by (`-n name@%h`)."""
        return f"{self.name}@{os.uname().nodename}"

    def tail(self, size: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-size:]

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.process.pid, sig)

    def kill_all(self) -> None:
        """SIGKILL the main process and every pool process at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def purge_queues(broker: str) -> None:
    """Empty the queues these tests use on a broker shared with other runs."""
    with Connection(broker) as conn, conn.channel() as channel:
        # SimpleQueue declares the queue first, so clearing one that is new is fine.
        for name in ("tests", "orchestrator"):
            conn.SimpleQueue(name, channel=channel).clear()


def warm_interpreters(worker_pid: int) -> set[int]:
    """The warm pytest interpreters of a worker's pool processes (its grandchildren)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            grandparent = int(Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if b"insuite/zygote.py" in cmdline and grandparent == worker_pid:
            found.add(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    """A zombie is dead: it runs nothing and is only waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_running(argv: list[str]) -> list[int]:
    """Pids of the live processes whose command line is exactly `argv`."""
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes() == wanted and pid_alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue  # gone while we looked
    return found


def wait_for_file(path: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return path.read_text()
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear within {timeout}s")
