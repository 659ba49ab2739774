"""Faults that must be survived: each ends in exactly one verdict and one advance.

Run on both brokers. Seconds to recovery are printed (run with -s to see them)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.chaos.conftest import POISON, Chaos, slow_suite
from tests.fleet import ADVANCE, pid_alive, wait_for_file

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
    assert kinds in (["advanced", "duplicate"], ["advanced", "already-done"]), kinds
    assert len(chaos.orchestrator.events_for(105, ADVANCE)) == 1
    assert len(pid_file.read_text().splitlines()) == 1
    report("duplicate-job", chaos, suite_runs=1, advances=1, second=kinds)


def test_warm_shutdown_finishes_the_running_job_first(chaos: Chaos) -> None:
    pid_file = chaos.tmp / "slow.pids"
    chaos.origin("slow", {"tests/test_slow.py": slow_suite(pid_file, 2)})
    worker = chaos.start_worker()
    chaos.orchestrator.send(**chaos.job(106, "slow"))
    wait_for_file(pid_file)
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0
    [advance] = chaos.orchestrator.wait_for_event(106, ADVANCE, timeout=5)
    assert advance["result"] == "PASS" and advance["report_pushed"] is True
    report("warm-shutdown", chaos, advances=1)
