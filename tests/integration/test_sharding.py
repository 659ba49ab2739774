"""One suite split over shard tasks (a Celery chord) by a real worker, on Redis and on
RabbitMQ: shards pull batches from the job's queue (a first run, no durations yet),
the merge is correct, a failing shard or a test no shard reported fails the job, a
shard whose process is killed has its batches dealt again, a shard that hangs is
retried alone and then fails the job closed; one advance (contained:
test_sharding_contained.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from testkit.fleet import ADVANCE, Orchestrator, WorkerProcess, fleet_env, purge_queues
from testkit.repofactory import make_origin, show_file
from tests.httpfixtures import Recorder, http_server
from tests.integration.shardfleet import BRANCH, BROKERS, REDIS, STATE_DB

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def recording_tests(module: str, count: int, runs: Path, body: str = "pass") -> str:
    """`count` tests that each append their id and pid to `runs`, then run `body`."""
    lines = ["import os\n\n"]
    for i in range(count):
        lines.append(
            f"\ndef test_{module}_{i}():\n"
            f"    with open({str(runs)!r}, 'a') as out:\n"
            f"        out.write('{module}_{i} ' + str(os.getpid()) + '\\n')\n"
            f"    {body if i == 0 else 'pass'}\n"
        )
    return "".join(lines)


VANISHING_CONFTEST = (
    "def pytest_collection_modifyitems(config, items):\n"
    "    # Planned at collection, silently dropped when a shard runs it.\n"
    "    if not config.option.collectonly:\n"
    "        items[:] = [i for i in items if 'vanishing' not in i.nodeid]\n"
)


@dataclass
class ShardFleet:
    orchestrator: Orchestrator
    origins: Path
    alerts: Recorder
    state: redis.Redis
    prefix: str
    worker: WorkerProcess

    def send(self, task_id: int, repo: str) -> Any:
        return self.orchestrator.send(
            task_id=task_id,
            repo=repo,
            work_item_id=f"WI-{task_id}",
            branch=BRANCH,
            agent="tester",
            stage="testing",
        )

    def report(self, repo: str, task_id: int) -> str:
        return show_file(
            self.origins / f"{repo}.git", BRANCH, f"docs/work-items/WI-{task_id}/13-test-report.md"
        )


CONTRACTS = """
[repos.shard_ok]
shards = 3
smoke_enabled = false

[repos.shard_red]
shards = 2
smoke_enabled = false

[repos.shard_missing]
shards = 2
smoke_enabled = false

[repos.shard_hang]
shards = 2
timeout_s = 6
smoke_enabled = false

[repos.shard_dead]
shards = 2
smoke_enabled = false
"""


@pytest.fixture(scope="module", params=sorted(BROKERS))
def shard_fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ShardFleet]:
    broker = BROKERS[request.param]
    tmp = tmp_path_factory.mktemp(f"shards-{request.param}")
    state = redis.Redis.from_url(f"{REDIS}/{STATE_DB}")
    state.flushdb()
    if request.param == "redis":
        redis.Redis.from_url(broker).flushdb()
    else:
        purge_queues(broker)
    (tmp / "contracts.toml").write_text(CONTRACTS)
    prefix = f"shards-{uuid.uuid4().hex[:8]}:"
    with http_server() as (alert_base, alerts):
        env = fleet_env(
            broker=broker,
            state=f"{REDIS}/{STATE_DB}",
            prefix=prefix,
            workdir=tmp / "work",
            origins=tmp / "origins",
            contracts=tmp / "contracts.toml",
            repos=["shard_ok", "shard_red", "shard_missing", "shard_hang", "shard_dead"],
            alert_url=f"{alert_base}/alert",
        )
        # The tests count each test's runs in a file outside the worktree, which a
        # contained suite cannot write; tests/hostile shards under containment.
        env["TESTGATE_CONTAINMENT"] = "off"
        worker = WorkerProcess.start(env, tmp / "worker.log", f"shards-{prefix[7:15]}", 3)
        orchestrator = Orchestrator.connect(broker, f"{REDIS}/{STATE_DB}")
        try:
            worker.wait_ready(orchestrator.app)
            yield ShardFleet(orchestrator, tmp / "origins", alerts, state, prefix, worker)
        finally:
            worker.stop()
            state.flushdb()
            if request.param == "redis":
                redis.Redis.from_url(broker).flushdb()
            else:
                purge_queues(broker)


def runs_by_test(runs: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for line in runs.read_text().splitlines():
        test, pid = line.split()
        found.setdefault(test, []).append(int(pid))
    return found


def test_a_sharded_suite_runs_every_test_once_and_merges_into_one_pass(
    shard_fleet: ShardFleet, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    files = {f"tests/test_{m}.py": recording_tests(m, 4, runs) for m in ("a", "b", "c")}
    make_origin(shard_fleet.origins, "shard_ok", files, branch=BRANCH)
    sent = shard_fleet.send(301, "shard_ok")
    [advance] = shard_fleet.orchestrator.wait_for_event(301, ADVANCE, timeout=120)
    assert (advance["result"], advance["outcome"]) == ("PASS", "code-pass"), (
        shard_fleet.worker.tail()
    )
    assert shard_fleet.orchestrator.wait_done(sent)["kind"] == "sharded"
    seen = runs_by_test(runs)
    assert len(seen) == 12 and all(len(pids) == 1 for pids in seen.values())
    # A first run (no durations): dealt in batches, one pytest process each.
    assert len({pids[0] for pids in seen.values()}) > 3, "more batches than shards"
    report = shard_fleet.report("shard_ok", 301)
    assert "result: PASS" in report and "tests_total: 12" in report and "3 shards" in report
    assert not shard_fleet.state.keys(f"{shard_fleet.prefix}deal:*"), "the deal was dropped"
    durations = shard_fleet.state.hgetall(f"{shard_fleet.prefix}durations:shard_ok")
    assert len(durations) == 12
    assert len(shard_fleet.orchestrator.events_for(301, ADVANCE)) == 1


def test_one_failing_shard_fails_the_whole_job(shard_fleet: ShardFleet, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    files = {
        "tests/test_a.py": recording_tests("a", 3, runs),
        "tests/test_b.py": recording_tests("b", 3, runs, body="assert 1 == 2"),
    }
    make_origin(shard_fleet.origins, "shard_red", files, branch=BRANCH)
    shard_fleet.send(302, "shard_red")
    [advance] = shard_fleet.orchestrator.wait_for_event(302, ADVANCE, timeout=120)
    assert (advance["result"], advance["outcome"]) == ("FAIL", "code-fail")
    report = shard_fleet.report("shard_red", 302)
    assert "result: FAIL" in report and "tests/test_b.py::test_b_0" in report
    assert "tests_total: 6" in report and "tests_failing: 1" in report
    assert len(runs_by_test(runs)) == 6


def test_a_planned_test_that_no_shard_reports_fails_the_job(
    shard_fleet: ShardFleet, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    files = {
        "conftest.py": VANISHING_CONFTEST,
        "tests/test_a.py": recording_tests("a", 3, runs) + "\n\ndef test_vanishing():\n    pass\n",
    }
    make_origin(shard_fleet.origins, "shard_missing", files, branch=BRANCH)
    shard_fleet.send(303, "shard_missing")
    [advance] = shard_fleet.orchestrator.wait_for_event(303, ADVANCE, timeout=120)
    assert (advance["result"], advance["outcome"]) == ("FAIL", "code-fail")
    report = shard_fleet.report("shard_missing", 303)
    # Either the batch that held it collected nothing (pytest's exit 5) or it came in a
    # batch with others and went unreported: FAIL, and the report names it.
    assert "tests/test_a.py::test_vanishing" in report
    assert "reported by no shard" in report or "no tests were collected" in report
    assert len(runs_by_test(runs)) == 3  # every other test ran


def test_a_hanging_shard_is_retried_alone_then_fails_the_job_closed(
    shard_fleet: ShardFleet, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    files = {
        "tests/test_a.py": recording_tests("a", 2, runs, body="__import__('time').sleep(600)"),
        "tests/test_b.py": recording_tests("b", 2, runs),
    }
    make_origin(shard_fleet.origins, "shard_hang", files, branch=BRANCH)
    shard_fleet.send(304, "shard_hang")
    [advance] = shard_fleet.orchestrator.wait_for_event(304, ADVANCE, timeout=180)
    assert (advance["result"], advance["outcome"]) == ("FAIL", "tool-error")
    # Dealt as [a_0, a_1], [b_0], [b_1]: the shard that pulls the first hangs on a_0
    # (a_1 never reached), the other runs the rest (again, if its own batches outlast
    # the 6 s budget on a loaded machine).
    seen = runs_by_test(runs)
    assert len(seen["a_0"]) == 2, "the hanging shard: its first try and one retry"
    assert "b_0" in seen and "b_1" in seen
    report = shard_fleet.report("shard_hang", 304)
    assert "not every shard ran" in report and "timed out" in report
    alerts = [p["text"] for _, _, p in shard_fleet.alerts.posts]
    assert any("WI-304" in text and "not a code defect" in text for text in alerts)
    assert len(shard_fleet.orchestrator.events_for(304, ADVANCE)) == 1


KILLED_ONCE = (
    "import os, signal, time\n\n\n"
    "def pool_process():\n"
    "    # The nearest celery ancestor: a warm start's parent is the warm interpreter.\n"
    "    pid = os.getppid()\n"
    "    while pid > 1:\n"
    "        with open(f'/proc/{{pid}}/cmdline', 'rb') as f:\n"
    "            if b'celery' in f.read():\n"
    "                return pid\n"
    "        with open(f'/proc/{{pid}}/stat') as f:\n"
    "            pid = int(f.read().rsplit(')', 1)[1].split()[1])\n"
    "    raise AssertionError('no pool process above the suite')\n\n\n"
    "def test_kills_its_shard_once():\n"
    "    with open({runs!r}, 'a') as out:\n"
    "        out.write('killer ' + str(os.getpid()) + '\\n')\n"
    "    if not os.path.exists({mark!r}):\n"
    "        open({mark!r}, 'w').close()\n"
    "        os.kill(pool_process(), signal.SIGKILL)\n"
    "        time.sleep(60)\n"
)


def test_a_shard_whose_process_dies_has_its_batches_dealt_again(
    shard_fleet: ShardFleet, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    files = {
        "tests/test_a.py": recording_tests("a", 10, runs),
        "tests/test_k.py": KILLED_ONCE.format(runs=str(runs), mark=str(tmp_path / "killed")),
    }
    make_origin(shard_fleet.origins, "shard_dead", files, branch=BRANCH)
    shard_fleet.send(305, "shard_dead")
    [advance] = shard_fleet.orchestrator.wait_for_event(305, ADVANCE, timeout=180)
    assert (advance["result"], advance["outcome"]) == ("PASS", "code-pass"), (
        shard_fleet.worker.tail()
    )
    seen = runs_by_test(runs)
    assert len(seen["killer"]) == 2, "killed once, then dealt again and passed"
    assert all(f"a_{i}" in seen for i in range(10))
    report = shard_fleet.report("shard_dead", 305)
    assert "tests_total: 11" in report and "2 shards pulled" in report
    assert "dealt again" in shard_fleet.worker.log.read_text()
    assert len(shard_fleet.orchestrator.events_for(305, ADVANCE)) == 1
