"""Faults that must be survived: each ends in exactly one verdict and one advance.

Run on both brokers. Seconds to recovery are printed (run with -s to see them)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from testkit.fleet import ADVANCE, pid_alive, wait_for_file, warm_interpreters
from testkit.repofactory import show_file
from tests.chaos.harness import BRANCH, POISON, Chaos, slow_suite
from tests.chaos.tcpproxy import TcpProxy
from tests.projects import escaping_daemon_project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def report(name: str, chaos: Chaos, **facts: object) -> None:
    print(f"\nCHAOS {name}[{chaos.broker_name}] " + " ".join(f"{k}={v}" for k, v in facts.items()))


def test_a_pool_process_killed_mid_suite_is_redelivered_and_advances_once(chaos: Chaos) -> None:
    pid_file = chaos.tmp / "slow.pids"
    chaos.origin("slow", {"tests/test_slow.py": slow_suite(pid_file, 3)})
    chaos.start_worker()
    sent = chaos.orchestrator.send(**chaos.job(101, "slow"))
    first_pytest, pool_process = map(int, wait_for_file(pid_file).split()[:2])
    killed_at = time.monotonic()
    os.kill(pool_process, signal.SIGKILL)
    [advance] = chaos.orchestrator.wait_for_event(101, ADVANCE, timeout=90)
    recovered_s = time.monotonic() - killed_at
    assert (advance["result"], advance["outcome"]) == ("PASS", "code-pass"), chaos.logs()
    deliveries = len(pid_file.read_text().splitlines())
    assert deliveries == 2
    assert not pid_alive(first_pytest), "the dead delivery's suite was left running"
    # The job's last delivery has ended (its result is stored): no other is running.
    assert chaos.orchestrator.wait_done(sent)["kind"] == "advanced"
    assert len(chaos.orchestrator.events_for(101, ADVANCE)) == 1
    report(
        "pool-process-killed",
        chaos,
        deliveries=deliveries,
        advances=1,
        recovery_s=f"{recovered_s:.1f}",
    )


def test_a_poison_job_fails_closed_after_its_delivery_budget(chaos: Chaos) -> None:
    chaos.origin("poison", {"tests/test_poison.py": POISON})
    chaos.start_worker()
    started = time.monotonic()
    chaos.orchestrator.send(**chaos.job(102, "poison"))
    [advance] = chaos.orchestrator.wait_for_event(102, ADVANCE, timeout=120)
    assert (advance["result"], advance["outcome"]) == ("FAIL", "tool-error"), chaos.logs()
    alerts = [p for _, _, p in chaos.alerts.posts]
    assert len(alerts) == 1 and "infrastructure, not a code defect" in alerts[0]["text"]
    assert "died" in alerts[0]["text"]
    # The queue is not wedged: a healthy job behind the poison one still runs.
    pid_file = chaos.tmp / "after.pids"
    chaos.origin("slow2", {"tests/test_slow.py": slow_suite(pid_file, 0)})
    chaos.orchestrator.send(**chaos.job(103, "slow2"))
    [healthy] = chaos.orchestrator.wait_for_event(103, ADVANCE, timeout=60)
    assert healthy["result"] == "PASS"
    assert len(chaos.orchestrator.events_for(102, ADVANCE)) == 1
    report(
        "poison-job",
        chaos,
        advances=1,
        alerts=1,
        seconds_to_fail_closed=f"{time.monotonic() - started:.1f}",
    )


def test_a_whole_worker_killed_mid_suite_loses_no_job(chaos: Chaos) -> None:
    pid_file = chaos.tmp / "slow.pids"
    chaos.origin("slow", {"tests/test_slow.py": slow_suite(pid_file, 2)})
    first = chaos.start_worker()
    sent = chaos.orchestrator.send(**chaos.job(104, "slow"))
    wait_for_file(pid_file)
    first.kill_all()
    killed_at = time.monotonic()
    chaos.start_worker()
    [advance] = chaos.orchestrator.wait_for_event(104, ADVANCE, timeout=120)
    recovered_s = time.monotonic() - killed_at
    assert advance["result"] == "PASS", chaos.logs()
    assert chaos.orchestrator.wait_done(sent)["kind"] == "advanced"
    assert len(chaos.orchestrator.events_for(104, ADVANCE)) == 1
    report(
        "whole-worker-killed",
        chaos,
        deliveries=len(pid_file.read_text().splitlines()),
        advances=1,
        recovery_s=f"{recovered_s:.1f}",
    )


def test_the_same_job_sent_twice_at_once_runs_once(chaos: Chaos) -> None:
    pid_file = chaos.tmp / "slow.pids"
    chaos.origin("slow", {"tests/test_slow.py": slow_suite(pid_file, 2)})
    chaos.start_worker(concurrency=2)
    first = chaos.orchestrator.send(**chaos.job(105, "slow"))
    second = chaos.orchestrator.send(**chaos.job(105, "slow"))
    kinds = sorted(chaos.orchestrator.wait_done(r)["kind"] for r in (first, second))
    # Overlapping requests coalesce (docs/contract.md §12); the gated variant that holds
    # the run open until the duplicate was dropped is tests/chaos/test_delivery.py.
    assert kinds == ["advanced", "duplicate"], kinds
    assert len(chaos.orchestrator.events_for(105, ADVANCE)) == 1
    assert len(pid_file.read_text().splitlines()) == 1
    report("duplicate-job", chaos, suite_runs=1, advances=1, second=kinds)


def test_warm_shutdown_finishes_the_running_job_first(chaos: Chaos) -> None:
    pid_file = chaos.tmp / "slow.pids"
    chaos.origin("slow", {"tests/test_slow.py": slow_suite(pid_file, 2)})
    worker = chaos.start_worker()
    chaos.orchestrator.send(**chaos.job(106, "slow"))
    wait_for_file(pid_file)
    warm = warm_interpreters(worker.process.pid)
    assert warm, "the pool process has no warm pytest interpreter"
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0
    [advance] = chaos.orchestrator.wait_for_event(106, ADVANCE, timeout=5)
    assert advance["result"] == "PASS" and advance["report_pushed"] is True
    assert "(warm): pid" in worker.tail(20000)
    assert not any(pid_alive(pid) for pid in warm), "a warm interpreter outlived its worker"
    report("warm-shutdown", chaos, advances=1)


def gated_suite(started: Path, go: Path) -> str:
    """A passing test that says it started, then waits for the test's go."""
    return (
        "import os, time\n\n\n"
        "def test_waits_for_go():\n"
        f"    open({str(started)!r}, 'w').write('started')\n"
        f"    while not os.path.exists({str(go)!r}):\n"
        "        time.sleep(0.05)\n"
    )


# How long the broker stays away after the report was pushed: shorter than the
# publish's own retries (about 8 s with the chaos settings), then longer, so that the
# task gives its message back unacked and the job is delivered again.
OUTAGES_S = [3.0, 14.0]


@pytest.mark.parametrize("outage_s", OUTAGES_S, ids=["short", "past-publish-retries"])
def test_an_advance_fired_while_the_broker_is_away_is_sent_once_it_is_back(
    chaos: Chaos, outage_s: float
) -> None:
    """The worker reaches the broker only through a proxy the test cuts just before the
    suite ends: the report is pushed, the advance cannot be, and it must arrive (once)
    after the broker comes back, without restarting anything."""
    started, go = chaos.tmp / "started", chaos.tmp / "go"
    origin = chaos.origin("gated", {"tests/test_gated.py": gated_suite(started, go)})
    target = urlsplit(chaos.broker)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 0) as proxy:
        chaos.start_worker(env={"TESTGATE_BROKER_URL": proxy.url_for(chaos.broker)})
        sent = chaos.orchestrator.send(**chaos.job(107, "gated"))
        wait_for_file(started)
        proxy.down()
        go.touch()
        report_path = "docs/work-items/WI-107/13-test-report.md"
        deadline = time.monotonic() + 60
        while True:  # the verdict is on the branch: the advance is being fired now
            try:
                show_file(origin, BRANCH, report_path)
                break
            except RuntimeError:  # not pushed yet
                assert time.monotonic() < deadline, chaos.logs()
                time.sleep(0.1)
        time.sleep(outage_s)  # the outage itself, not a wait for a race
        assert chaos.orchestrator.events_for(107, ADVANCE) == []
        assert proxy.refused > 0, "nobody tried to reach the broker while it was away"
        proxy.up()
        back_at = time.monotonic()
        [advance] = chaos.orchestrator.wait_for_event(107, ADVANCE, timeout=120)
        recovered_s = time.monotonic() - back_at
        assert (advance["result"], advance["report_pushed"]) == ("PASS", True), chaos.logs()
        assert chaos.orchestrator.wait_succeeded(sent.id)["kind"] in {
            "advanced",
            "already-done",
            "duplicate",
        }
        assert len(chaos.orchestrator.events_for(107, ADVANCE)) == 1
        report(
            "broker-away-at-advance",
            chaos,
            outage_s=outage_s,
            refused_connections=proxy.refused,
            advances=1,
            seconds_after_broker_back=f"{recovered_s:.1f}",
        )


def test_a_daemon_that_cleared_its_environment_dies_with_its_job_without_a_cgroup(
    chaos: Chaos,
) -> None:
    """No pids cgroup (as for a non-root worker): the pool process, a child subreaper,
    adopts the daemon the suite leaves and kills it when the job ends."""
    project, pid_file = escaping_daemon_project(chaos.tmp)
    chaos.origin("escape", {"tests/test_escape.py": (project / "tests/test_escape.py").read_text()})
    chaos.start_worker(env={"TESTGATE_SUITE_MAX_PIDS": "0", "TESTGATE_CONTAINMENT": "off"})
    sent = chaos.orchestrator.send(**chaos.job(108, "escape"))
    assert chaos.orchestrator.wait_done(sent)["kind"] == "advanced", chaos.logs()
    [advance] = chaos.orchestrator.events_for(108, ADVANCE)
    assert advance["result"] == "PASS"
    daemon = int(pid_file.read_text())
    assert not pid_alive(daemon), "the daemon outlived its job"
    assert "left behind (adopted)" in chaos.logs()
    report("daemon-without-cgroup", chaos, advances=1, daemon_alive=False)
