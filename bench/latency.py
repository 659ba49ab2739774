"""End-to-end latency of a one-test job (enqueue -> advance received) against bare
`python -m pytest` on the same suite, on this machine, with a real worker and Redis.

    .venv/bin/python -m bench.latency --runs 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery

from tests.fleet import WorkerProcess
from tests.repofactory import git, make_origin

ONE_TEST = {"tests/test_one.py": "def test_one():\n    assert 1 + 1 == 2\n"}


def bare_pytest(checkout: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pytest", "tests/", "-q", "-p", "no:cacheprovider"],
            cwd=checkout,
            capture_output=True,
            check=True,
        )
        times.append(time.perf_counter() - started)
    return times


def gate_jobs(app: Celery, runs: int, first_task_id: int) -> list[float]:
    """Each job has its own task id: a repeated (task id, commit) is never advanced twice."""
    times = []
    with app.connection_for_read() as conn, conn.SimpleQueue("orchestrator") as queue:
        for task_id in range(first_task_id, first_task_id + runs):
            started = time.perf_counter()
            app.send_task(
                "testgate.run_test_gate",
                queue="tests",
                kwargs={
                    "task_id": task_id,
                    "repo": "bench",
                    "work_item_id": f"WI-{task_id}",
                    "branch": "feature/x",
                    "agent": "tester",
                    "stage": "testing",
                },
            )
            message = queue.get(block=True, timeout=120)
            times.append(time.perf_counter() - started)
            assert message.headers["task"] == "orchestrator.advance_stage"
            message.ack()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--db", type=int, default=12)
    args = parser.parse_args()
    broker = f"{args.redis}/{args.db}"
    redis.Redis.from_url(broker).flushdb()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        origin = make_origin(tmp, "bench", ONE_TEST)
        checkout = tmp / "checkout"
        git(tmp, "clone", "-q", "-b", "feature/x", str(origin), str(checkout))
        env = {
            **os.environ,
            "TESTGATE_BROKER_URL": broker,
            "TESTGATE_RESULT_BACKEND": broker,
            "TESTGATE_REPOS": "bench",
            "TESTGATE_SELF_REPO": "bench",
            "TESTGATE_SMOKE_ENABLED": "false",
            "TESTGATE_KEY_PREFIX": "bench:",
            "TESTGATE_WORKDIR": str(tmp / "work"),
            "TESTGATE_GIT_URL_TEMPLATE": str(tmp / "{repo}.git"),
        }
        worker = WorkerProcess.start(env, tmp / "worker.log", "bench")
        app = Celery("bench-orchestrator", broker=broker, backend=broker)
        try:
            worker.wait_ready(app)
            # Warm-up: the mirror is cloned once, as on a long-lived worker.
            gate_jobs(app, 1, first_task_id=1)
            bare = bare_pytest(checkout, args.runs)
            gate = gate_jobs(app, args.runs, first_task_id=2)
        except BaseException:
            print(worker.tail(), file=sys.stderr)
            raise
        finally:
            worker.stop()
            redis.Redis.from_url(broker).flushdb()
    bare_ms, gate_ms = statistics.median(bare) * 1000, statistics.median(gate) * 1000
    print(f"runs: {args.runs} each, machine: {os.cpu_count()} cores")
    print(f"bare pytest median: {bare_ms:.0f} ms (min {min(bare) * 1000:.0f})")
    print(
        f"testgate job median (enqueue -> advance received): {gate_ms:.0f} ms "
        f"(min {min(gate) * 1000:.0f})"
    )
    print(f"overhead: {gate_ms - bare_ms:.0f} ms, ratio {gate_ms / bare_ms:.2f}")


if __name__ == "__main__":
    main()
