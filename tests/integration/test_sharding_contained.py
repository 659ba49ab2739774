"""A sharded job under containment (bubblewrap, TESTGATE_CONTAINMENT=required): every
batch of every shard starts cold in its own namespaces, the suite cannot reach Redis,
and the shards still pull their batches (the worker does), run and merge into a PASS.

Its own module: the worker here uses the broker and state DBs of test_sharding.py,
whose fleet is stopped when that module ends."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from testkit.fleet import ADVANCE, Orchestrator, WorkerProcess, fleet_env
from testkit.repofactory import make_origin, show_file
from tests.integration.shardfleet import BRANCH, BROKERS, REDIS, STATE_DB
from worker.containment.bwrap import bwrap_missing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REDIS_PORT = urlsplit(REDIS).port or 6379
REACH_TEST = (
    "import socket\n\n\n"
    "def test_redis_is_out_of_reach():\n"
    "    sock = socket.socket()\n"
    "    sock.settimeout(1)\n"
    f"    assert sock.connect_ex(('127.0.0.1', {REDIS_PORT})) != 0\n"
)


@pytest.mark.skipif(bwrap_missing() is not None, reason="bubblewrap cannot run here")
def test_a_sharded_job_passes_under_containment(tmp_path: Path) -> None:
    broker = BROKERS["redis"]
    state = redis.Redis.from_url(f"{REDIS}/{STATE_DB}")
    for db in (broker, f"{REDIS}/{STATE_DB}"):
        redis.Redis.from_url(db).flushdb()
    (tmp_path / "contracts.toml").write_text(
        "[repos.shard_boxed]\nshards = 2\nsmoke_enabled = false\n"
    )
    files = {
        f"tests/test_{m}.py": "".join(f"def test_{m}_{i}():\n    pass\n\n\n" for i in range(4))
        for m in ("a", "b", "c")
    }
    files["tests/test_reach.py"] = REACH_TEST
    make_origin(tmp_path / "origins", "shard_boxed", files, branch=BRANCH)
    prefix = f"boxed-{uuid.uuid4().hex[:8]}:"
    env = fleet_env(
        broker=broker,
        state=f"{REDIS}/{STATE_DB}",
        prefix=prefix,
        workdir=tmp_path / "work",
        origins=tmp_path / "origins",
        contracts=tmp_path / "contracts.toml",
        repos=["shard_boxed"],
        alert_url="http://127.0.0.1:9/alert",
    )
    env["TESTGATE_CONTAINMENT"] = "required"
    worker = WorkerProcess.start(env, tmp_path / "worker.log", f"boxed-{prefix[6:14]}", 2)
    orchestrator = Orchestrator.connect(broker, f"{REDIS}/{STATE_DB}")
    try:
        worker.wait_ready(orchestrator.app)
        orchestrator.send(
            task_id=306,
            repo="shard_boxed",
            work_item_id="WI-306",
            branch=BRANCH,
            agent="tester",
            stage="testing",
        )
        [advance] = orchestrator.wait_for_event(306, ADVANCE, timeout=240)
        assert (advance["result"], advance["outcome"]) == ("PASS", "code-pass"), worker.tail()
        report = show_file(
            tmp_path / "origins" / "shard_boxed.git",
            BRANCH,
            "docs/work-items/WI-306/13-test-report.md",
        )
        assert "tests_total: 13" in report and "2 shards pulled" in report
        # test_reach passed: the suite could not reach Redis, so it ran contained.
        assert "batch(es)" in worker.log.read_text()
    finally:
        worker.stop()
        for db in (broker, f"{REDIS}/{STATE_DB}"):
            redis.Redis.from_url(db).flushdb()
        state.close()
