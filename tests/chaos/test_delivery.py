"""Delivery identities under broker faults (docs/contract.md §12, README "Delivery guarantees"):
a message is answered at most once whatever its redeliveries, overlapping requests
coalesce, a request after an answer is answered again, and no fault leaves a request
unanswered.

Each test polls for the condition it needs (log lines, files, events) with a deadline;
the suites under test wait for the test's go file instead of sleeping."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import kombu.pools
import pytest

from testkit.fleet import ADVANCE, WorkerProcess, pid_alive, wait_for_file
from tests.chaos.harness import Chaos
from tests.chaos.tcpproxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RUN_TASK = "testgate.run_test_gate"
FAILING = "def test_red():\n    assert 1 == 2\n"


def report(name: str, chaos: Chaos, **facts: object) -> None:
    print(f"\nCHAOS {name}[{chaos.broker_name}] " + " ".join(f"{k}={v}" for k, v in facts.items()))


def gated_suite(started: Path, go: Path) -> str:
    """A passing test that appends its pid when it starts, then waits for the test's go."""
    return (
        "import os, time\n\n\n"
        "def test_waits_for_go():\n"
        f"    with open({str(started)!r}, 'a') as out:\n"
        "        out.write(f'{os.getpid()}\\n')\n"
        f"    while not os.path.exists({str(go)!r}):\n"
        "        time.sleep(0.05)\n"
    )


def all_logs(chaos: Chaos) -> str:
    return "\n".join(w.log.read_text(errors="replace") for w in chaos.workers)


def count(chaos: Chaos, pattern: str) -> int:
    return len(re.findall(pattern, all_logs(chaos)))


def received(chaos: Chaos, task_uuid: str) -> int:
    """Deliveries of one message, over every worker."""
    return count(chaos, re.escape(f"Task {RUN_TASK}[{task_uuid}] received"))


def finished(chaos: Chaos, task_uuid: str) -> int:
    """Deliveries of one message that ended (returned, retried or gave it back)."""
    return count(
        chaos, re.escape(f"Task {RUN_TASK}[{task_uuid}] ") + r"(succeeded|retry|reject requeue)"
    )


def wait_until(check: Callable[[], bool], chaos: Chaos, what: str, timeout: float = 90) -> float:
    """Poll `check` until true; return the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what} within {timeout}s:\n{chaos.logs()}"
        time.sleep(0.1)
    return time.monotonic() - started


def stop_consuming(chaos: Chaos, worker: WorkerProcess) -> None:
    """Cancel `worker`'s consumer of the tests queue; it finishes what it runs.

    The worker answers cancel_consumer before it cancels (Celery defers the cancel to
    its event loop with call_soon): a connection cut right after the answer can beat
    the cancel, and the worker, reconnecting, consumes the tests queue again. So this
    waits until the worker reports it no longer consumes it."""
    control = chaos.orchestrator.app.control
    replies = control.cancel_consumer(
        "tests", destination=[worker.hostname], reply=True, timeout=10
    )
    assert replies, f"{worker.hostname} did not confirm it stopped consuming"

    def consumes_tests() -> bool:
        active = control.inspect(destination=[worker.hostname], timeout=2).active_queues()
        queues = (active or {}).get(worker.hostname)
        # No answer at all is not a confirmation: ask again.
        return queues is None or any(queue["name"] == "tests" for queue in queues)

    wait_until(lambda: not consumes_tests(), chaos, f"{worker.hostname} to stop consuming")


def close_rabbitmq_connections(broker: str) -> None:
    """`rabbitmqctl close_all_connections` on the test's own vhost only."""
    vhost = urlsplit(broker).path.lstrip("/") or "/"
    subprocess.run(
        ["rabbitmqctl", "close_all_connections", "-p", vhost, "testgate chaos"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # This process's pooled connections (kombu's global pools, shared by every app on
    # the same URL) were closed too: drop them, or the next test would pick one up.
    kombu.pools.reset()


def settle(chaos: Chaos, task_uuid: str, runs: int) -> int:
    """Wait until `runs` deliveries of the message ended; return how many deliveries the
    broker made. (A copy a worker had only reserved when its own connection dropped is
    never run: the broker takes it back, so not every "received" ends.)"""
    wait_until(lambda: finished(chaos, task_uuid) >= runs, chaos, f"{runs} deliveries ended")
    return received(chaos, task_uuid)


def run_through_connection_loss(
    chaos: Chaos,
    task_id: int,
    cut: Callable[[], None],
    *,
    second_worker_waits: bool,
    name: str,
) -> None:
    """The shared body of (a) and (b): a gated suite runs, the running worker's broker
    connection is lost, the message is delivered again while the first delivery is
    alive; then the suite is let go. One advance, PASS, the
    suite ran once. `second_worker_waits`: the redelivery must be the one that waited
    on the live lease (not one queued behind the first in the same worker)."""
    started, go = chaos.tmp / "started", chaos.tmp / "go"
    chaos.origin("gated", {"tests/test_gated.py": gated_suite(started, go)})
    sent = chaos.orchestrator.send(**chaos.job(task_id, "gated"))
    first_pytest = int(wait_for_file(started).split()[0])
    chaos.start_worker()  # the second worker, idle until the message comes back
    cut_at = time.monotonic()
    cut()
    # The broker gives the running message back; some worker receives it again and,
    # finding the first delivery's lease alive, waits instead of running or killing it.
    wait_until(lambda: received(chaos, sent.id) >= 2, chaos, "no redelivery after the cut")
    redelivered_s = time.monotonic() - cut_at
    waited = "still runs it: waiting"
    if second_worker_waits:
        wait_until(lambda: waited in all_logs(chaos), chaos, "the redelivery did not wait")
    assert pid_alive(first_pytest), f"the first delivery's suite was killed:\n{chaos.logs()}"
    go.touch()
    [advance] = chaos.orchestrator.wait_for_event(task_id, ADVANCE, timeout=120)
    recovered_s = time.monotonic() - cut_at
    assert (advance["result"], advance["outcome"]) == ("PASS", "code-pass"), chaos.logs()
    # The first delivery (advanced) and the copy that waited for it (answered nothing).
    deliveries = settle(chaos, sent.id, runs=2)
    assert len(started.read_text().split()) == 1, "the suite ran more than once"
    assert "answered already" in all_logs(chaos)
    assert "takes over" not in all_logs(chaos), "a live delivery's lease was taken over"
    assert len(chaos.orchestrator.events_for(task_id, ADVANCE)) == 1
    report(
        name,
        chaos,
        deliveries=deliveries,
        suite_runs=1,
        advances=1,
        result=advance["result"],
        second_waited_on_lease=waited in all_logs(chaos),
        redelivered_after_s=f"{redelivered_s:.1f}",
        recovery_s=f"{recovered_s:.1f}",
    )


def test_a_running_workers_broker_connection_cut_gives_one_advance(chaos: Chaos) -> None:
    """(a) Two workers; the one running the suite loses its broker connection (a proxy
    reset: Redis itself and the state stay up)."""
    target = urlsplit(chaos.broker)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 0) as proxy:
        first = chaos.start_worker(env={"TESTGATE_BROKER_URL": proxy.url_for(chaos.broker)})

        def reset() -> None:
            # The running worker stops taking jobs first, so that the message given back
            # goes to the other worker and finds the first delivery alive there (on
            # this one it would only queue behind the running delivery).
            stop_consuming(chaos, first)
            proxy.reset()  # every open connection dropped, new ones forwarded: a blip

        run_through_connection_loss(
            chaos, 301, reset, second_worker_waits=True, name="broker-connection-cut-mid-suite"
        )


def test_rabbitmq_closing_every_connection_mid_suite_gives_one_advance(chaos: Chaos) -> None:
    """(b) The server closes the connections (as on a node restart or an operator's
    close_all_connections); RabbitMQ requeues the running message at once."""
    if chaos.broker_name != "rabbitmq":
        pytest.skip("a RabbitMQ server-side close; the Redis case is the test above")
    first = chaos.start_worker()

    def close() -> None:
        stop_consuming(chaos, first)  # the requeued message goes to the other worker
        close_rabbitmq_connections(chaos.broker)

    run_through_connection_loss(
        chaos, 302, close, second_worker_waits=True, name="rabbitmq-connections-closed-mid-suite"
    )


def test_a_re_test_at_the_same_commit_after_a_fail_gets_its_own_advance(chaos: Chaos) -> None:
    """(c) The orchestrator sends the task again at the tested commit (a rollback after
    a flaky failure, a human re-run): a new request, a new verdict and advance."""
    chaos.origin("red", {"tests/test_red.py": FAILING})
    chaos.start_worker()
    first = chaos.orchestrator.send(**chaos.job(303, "red"))
    [fail] = chaos.orchestrator.wait_for_event(303, ADVANCE, timeout=90)
    assert fail["result"] == "FAIL", chaos.logs()
    assert chaos.orchestrator.wait_done(first)["kind"] == "advanced"
    again_at = time.monotonic()
    again = chaos.orchestrator.send(**chaos.job(303, "red", commit=fail["commit"]))
    assert chaos.orchestrator.wait_done(again)["kind"] == "advanced", chaos.logs()
    recovered_s = time.monotonic() - again_at
    advances = chaos.orchestrator.events_for(303, ADVANCE)
    assert [(a["result"], a["commit"]) for a in advances] == [("FAIL", fail["commit"])] * 2
    report(
        "re-test-after-fail",
        chaos,
        messages=2,
        deliveries=received(chaos, first.id) + received(chaos, again.id),
        advances=len(advances),
        second_answer_s=f"{recovered_s:.1f}",
    )


def test_two_concurrent_duplicates_give_one_run_and_one_advance(chaos: Chaos) -> None:
    """(d) The same request sent twice at once, on two workers: the second coalesces
    into the first's run (held open until the duplicate was dropped)."""
    started, go = chaos.tmp / "started", chaos.tmp / "go"
    chaos.origin("gated", {"tests/test_gated.py": gated_suite(started, go)})
    chaos.start_worker()
    chaos.start_worker()
    sent_at = time.monotonic()
    first = chaos.orchestrator.send(**chaos.job(304, "gated"))
    second = chaos.orchestrator.send(**chaos.job(304, "gated"))
    wait_for_file(started)
    # Whichever did not get the lease ends as a duplicate while the other still runs.
    wait_until(
        lambda: count(chaos, r"duplicate of task 304 ignored") == 1, chaos, "no duplicate dropped"
    )
    go.touch()
    kinds = sorted(chaos.orchestrator.wait_done(r)["kind"] for r in (first, second))
    assert kinds == ["advanced", "duplicate"], kinds
    [advance] = chaos.orchestrator.events_for(304, ADVANCE)
    assert advance["result"] == "PASS"
    assert len(started.read_text().split()) == 1
    report(
        "concurrent-duplicates",
        chaos,
        messages=2,
        deliveries=received(chaos, first.id) + received(chaos, second.id),
        suite_runs=1,
        advances=1,
        answered_s=f"{time.monotonic() - sent_at:.1f}",
    )


def test_an_outage_that_ends_between_the_retry_failure_and_the_reject(chaos: Chaos) -> None:
    """(e) The worker publishes through a proxy that is down (advance and retry both
    fail) but consumes, acks and rejects directly: the reject happens on a broker that
    is back. Celery's own Reject(requeue=False) would delete the message there; it must
    be given back, delivered again and answered once the publish side returns.

    The publish side comes back as soon as the reject was decided: the worker's main
    process also publishes its task events there and blocks on them while it is away."""
    started, go = chaos.tmp / "started", chaos.tmp / "go"
    origin_files = {"tests/test_gated.py": gated_suite(started, go)}
    chaos.origin("gated", origin_files)
    target = urlsplit(chaos.broker)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 0) as proxy:
        chaos.start_worker(env={"CELERY_BROKER_WRITE_URL": proxy.url_for(chaos.broker)})
        sent = chaos.orchestrator.send(**chaos.job(305, "gated"))
        wait_for_file(started)
        proxy.down()
        go.touch()
        wait_until(
            lambda: count(chaos, r"retry not published .*given back to the broker") >= 1,
            chaos,
            "the failed retry publish was not turned into a requeue",
        )
        assert chaos.orchestrator.events_for(305, ADVANCE) == []
        assert proxy.refused > 0, "nobody tried to publish while the proxy was down"
        proxy.up()
        back_at = time.monotonic()
        # Given back, not deleted: the same message is delivered again and answered.
        wait_until(lambda: received(chaos, sent.id) >= 2, chaos, "the message was lost")
        [advance] = chaos.orchestrator.wait_for_event(305, ADVANCE, timeout=120)
        recovered_s = time.monotonic() - back_at
        assert (advance["result"], advance["outcome"]) == ("PASS", "code-pass"), chaos.logs()
        # The delivery that gave the message back and the one that advanced.
        deliveries = settle(chaos, sent.id, runs=2)
        assert count(chaos, re.escape(f"[{sent.id}] reject requeue=True")) >= 1
        assert len(chaos.orchestrator.events_for(305, ADVANCE)) == 1
        report(
            "outage-ends-before-reject",
            chaos,
            deliveries=deliveries,
            requeues=count(chaos, r"retry not published .*given back to the broker"),
            advances=1,
            seconds_after_publish_back=f"{recovered_s:.1f}",
        )
