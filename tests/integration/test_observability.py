"""Where a job's time went, seen by the tools operators use: a real worker configured
only by OTEL_EXPORTER_OTLP_ENDPOINT exports the span tree of a job (and of a sharded
job) to an OTLP receiver on 127.0.0.1, in the same trace as the orchestrator's enqueue
and its handling of the advance (the orchestrator, a Celery app, is instrumented
here); the phase timings reach the report and /metrics; and every query of the Grafana
dashboard names a metric that a live `testgate metrics` exports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from testkit.fleet import ADVANCE, ROOT, Orchestrator, WorkerProcess, fleet_env, job_kwargs
from testkit.otlp import Collector, ReceivedSpan, otlp_receiver
from testkit.repofactory import make_origin, show_file
from tests.httpfixtures import free_port, healthy_routes, http_server
from worker import client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REDIS = os.environ.get("TESTGATE_TEST_REDIS", "redis://127.0.0.1:6379")
BROKER_DB, STATE_DB = 6, 7
BRANCH = "feature/obs"
OUTPUT_MARKER = "SUITE-OUTPUT-MUST-NOT-REACH-A-SPAN"
ENV_MARKER = "SUITE-ENV-MUST-NOT-REACH-A-SPAN"
DASHBOARD = ROOT / "deploy" / "grafana" / "testgate.json"

GREEN_TESTS = (
    "import os\n\n\n"
    "def test_prints_and_passes():\n"
    f"    print({OUTPUT_MARKER!r}, os.environ.get('OBS_SECRET'))\n"
    "    assert True\n\n\n"
    "def test_also_passes():\n"
    "    assert 1 + 1 == 2\n"
)
SHARD_TESTS = "".join(f"\ndef test_shard_{i}():\n    assert {i} == {i}\n\n" for i in range(6))


@dataclass
class TracedFleet:
    orchestrator: Orchestrator
    collector: Collector
    orchestrator_spans: InMemorySpanExporter
    origins: Path
    broker: str
    state_url: str
    prefix: str

    def send(self, task_id: int, repo: str) -> str:
        job = job_kwargs(task_id, repo, branch=BRANCH)
        # As the orchestrator does: through testgate's client, in its own Celery app.
        return client.enqueue(job, app=self.orchestrator.app)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedFleet]:
    tmp = tmp_path_factory.mktemp("observability")
    broker, state_url = f"{REDIS}/{BROKER_DB}", f"{REDIS}/{STATE_DB}"
    for url in (broker, state_url):
        redis.Redis.from_url(url).flushdb()
    origins = tmp / "origins"
    make_origin(origins, "obs_green", {"tests/test_green.py": GREEN_TESTS}, branch=BRANCH)
    make_origin(origins, "obs_shard", {"tests/test_many.py": SHARD_TESTS}, branch=BRANCH)
    # The orchestrator's side: its own provider, the Celery instrumentation, and a worker
    # (in a thread) that handles advance_stage as the real one would.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    orchestrator = Orchestrator.connect(broker, state_url)
    advanced: list[dict[str, Any]] = []

    @orchestrator.app.task(name=ADVANCE, shared=False)
    def advance_stage(**kwargs: Any) -> None:
        advanced.append(kwargs)

    with (
        http_server(healthy_routes("/ok")) as (smoke_base, _),
        http_server() as (alert_base, _alerts),
        otlp_receiver() as (endpoint, collector),
    ):
        contracts = tmp / "contracts.toml"
        contracts.write_text(
            "[repos.obs_green]\n"
            f'smoke_base_url = "{smoke_base}/ok"\n'
            f'env = {{OBS_SECRET = "{ENV_MARKER}"}}\n\n'
            "[repos.obs_shard]\nshards = 2\nsmoke_enabled = false\n"
        )
        prefix = f"obs-{uuid.uuid4().hex[:8]}:"
        env = {
            **fleet_env(
                broker=broker,
                state=state_url,
                prefix=prefix,
                workdir=tmp / "work",
                origins=origins,
                contracts=contracts,
                repos=["obs_green", "obs_shard"],
                alert_url=f"{alert_base}/alert",
            ),
            # Only the standard variables: the collector is this test's receiver.
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "testgate-worker",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        worker = WorkerProcess.start(env, tmp / "worker.log", f"obs-{prefix[4:12]}", 3)
        try:
            worker.wait_ready(orchestrator.app)
            with start_worker(
                orchestrator.app,
                pool="solo",
                perform_ping_check=False,
                queues=["orchestrator"],
                shutdown_timeout=30,
            ):
                yield TracedFleet(
                    orchestrator, collector, exporter, origins, broker, state_url, prefix
                )
        finally:
            worker.stop()
            instrumentor.uninstrument()
            for url in (broker, state_url):
                redis.Redis.from_url(url).flushdb()


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def local_spans(exporter: InMemorySpanExporter) -> list[ReceivedSpan]:
    """The orchestrator's spans in the collector's shape."""

    def shape(span: ReadableSpan) -> ReceivedSpan:
        assert span.context is not None
        return ReceivedSpan(
            trace_id=_hex(span.context.trace_id, 32),
            span_id=_hex(span.context.span_id, 16),
            parent_id=_hex(span.parent.span_id, 16) if span.parent else "",
            name=span.name,
            service="orchestrator",
            attributes=dict(span.attributes or {}),
            start_ns=span.start_time or 0,
            end_ns=span.end_time or 0,
        )

    return [shape(s) for s in exporter.get_finished_spans()]


def trace_of(
    fleet: TracedFleet, task_uuid: str, want: set[str], timeout: float = 120
) -> list[ReceivedSpan]:
    """Every span of the trace that started with the orchestrator's enqueue of
    `task_uuid`, once the trace holds a span of each name in `want`."""
    deadline = time.monotonic() + timeout
    spans: list[ReceivedSpan] = []
    while True:
        local = local_spans(fleet.orchestrator_spans)
        sent = [
            s
            for s in local
            if s.name == "apply_async/testgate.run_test_gate"
            and task_uuid in s.attributes.values()  # the message id
        ]
        if sent:
            trace_id = sent[0].trace_id
            spans = [s for s in [*local, *fleet.collector.snapshot()] if s.trace_id == trace_id]
            if want <= {s.name for s in spans}:
                return spans
        assert time.monotonic() < deadline, (
            f"trace incomplete: {sorted(want - {s.name for s in spans})} missing from "
            f"{sorted(s.name for s in spans)}; {len(local)} local spans, "
            f"{len(fleet.collector.snapshot())} received"
        )
        time.sleep(0.2)


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans"
    return found[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> set[str]:
    return {s.name for s in spans if s.parent_id == parent.span_id}


def descends(spans: list[ReceivedSpan], span: ReceivedSpan, ancestor: ReceivedSpan) -> bool:
    by_id = {s.span_id: s for s in spans}
    current: ReceivedSpan | None = span
    while current is not None:
        if current.parent_id == ancestor.span_id:
            return True
        current = by_id.get(current.parent_id)
    return False


JOB_PHASES = {
    "testgate.queue_wait",
    "testgate.checkout",
    "testgate.setup",
    "testgate.suite",
    "testgate.smoke",
    "testgate.report",
    "testgate.push",
    "testgate.announce",
}


def test_one_job_is_one_trace_from_enqueue_through_its_phases_to_the_advance(
    traced: TracedFleet,
) -> None:
    task_uuid = traced.send(7101, "obs_green")
    want = {*JOB_PHASES, "testgate.job", "run/testgate.run_test_gate"}
    spans = trace_of(traced, task_uuid, {*want, "run/orchestrator.advance_stage"})
    enqueue = one(spans, "apply_async/testgate.run_test_gate")
    run = one(spans, "run/testgate.run_test_gate")
    job = one(spans, "testgate.job")
    assert run.parent_id == enqueue.span_id and job.parent_id == run.span_id
    assert job.service == "testgate-worker"
    assert children(spans, job) == JOB_PHASES
    # Each span arrives with its times: the phases lie within the job, the job within
    # the task that ran it; the wait on the broker, back-dated, ends inside the job.
    assert 0 < run.start_ns <= job.start_ns < job.end_ns <= run.end_ns
    waited = one(spans, "testgate.queue_wait")
    assert waited.start_ns <= waited.end_ns and job.start_ns <= waited.end_ns <= job.end_ns
    for timed in (s for s in spans if s.parent_id == job.span_id and s is not waited):
        assert job.start_ns <= timed.start_ns <= timed.end_ns <= job.end_ns, timed.name
    assert {
        k: job.attributes[k]
        for k in (
            "testgate.repo",
            "testgate.task_id",
            "testgate.work_item",
            "testgate.attempt",
            "testgate.outcome",
            "testgate.verdict",
        )
    } == {
        "testgate.repo": "obs_green",
        "testgate.task_id": 7101,
        "testgate.work_item": "WI-7101",
        "testgate.attempt": 0,
        "testgate.outcome": "code-pass",
        "testgate.verdict": "PASS",
    }
    suite = one(spans, "testgate.suite")
    assert suite.attributes["testgate.tests"] == 2
    assert suite.attributes["testgate.tests_failing"] == 0
    assert suite.attributes["testgate.exit_code"] == 0
    # The advance is published inside the announce phase, and the orchestrator's
    # handling of it is that message's child: the same trace, end to end.
    publish = one(spans, "apply_async/orchestrator.advance_stage")
    assert publish.parent_id == one(spans, "testgate.announce").span_id
    assert one(spans, "run/orchestrator.advance_stage").parent_id == publish.span_id
    # Nothing of the suite's environment or output is in any span.
    for span in traced.collector.snapshot():
        text = json.dumps(span.attributes, default=str)
        assert OUTPUT_MARKER not in text and ENV_MARKER not in text, span.name
    # The same phases, timed, are in the report.
    report = show_file(
        traced.origins / "obs_green.git", BRANCH, "docs/work-items/WI-7101/13-test-report.md"
    )
    table = report.split("## Where the time went", 1)[1]
    for phase in ("queue wait", "checkout", "setup", "suite", "smoke"):
        assert re.search(rf"^\| {phase} \| \d+\.\d\d \|$", table, re.M), phase


def test_a_sharded_job_holds_its_shards_and_merge_in_its_trace(traced: TracedFleet) -> None:
    task_uuid = traced.send(7102, "obs_shard")
    want = {
        "run/testgate.run_test_gate",
        "testgate.job",
        "testgate.shard",
        "testgate.merge",
        "run/orchestrator.advance_stage",
    }
    spans = trace_of(traced, task_uuid, want)
    job = one(spans, "testgate.job")
    assert job.attributes["testgate.outcome"] == "sharded"
    assert {"testgate.checkout", "testgate.setup", "testgate.collect"} <= children(spans, job)
    shards = [s for s in spans if s.name == "testgate.shard"]
    deadline = time.monotonic() + 30
    while len(shards) < 2 and time.monotonic() < deadline:
        spans = trace_of(traced, task_uuid, want)
        shards = [s for s in spans if s.name == "testgate.shard"]
        time.sleep(0.2)
    assert sorted(s.attributes["testgate.shard"] for s in shards) == [1, 2]
    for shard in shards:
        assert descends(spans, shard, job)
        assert {"testgate.checkout", "testgate.suite"} <= children(spans, shard)
        assert shard.attributes["testgate.task_id"] == 7102
    merge = one(spans, "testgate.merge")
    assert descends(spans, merge, job)
    assert merge.attributes["testgate.outcome"] == "code-pass"
    assert merge.attributes["testgate.verdict"] == "PASS"
    assert {"testgate.report", "testgate.push", "testgate.announce"} <= children(spans, merge)
    advance = one(spans, "run/orchestrator.advance_stage")
    assert descends(spans, advance, merge)


def scrape_metrics(fleet: TracedFleet) -> str:
    port = free_port()
    env = {
        **os.environ,
        "TESTGATE_BROKER_URL": fleet.broker,
        "TESTGATE_RESULT_BACKEND": fleet.state_url,
        "TESTGATE_STATE_URL": fleet.state_url,
        "TESTGATE_KEY_PREFIX": fleet.prefix,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "worker.cli.main", "metrics", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    return str(r.read().decode())
            except OSError:
                assert time.monotonic() < deadline, "metrics endpoint did not come up"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)


def exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "by", "histogram_quantile", "le", "phase", "outcome",
    "mode", "max", "min", "avg", "without", "on", "ignoring", "clamp_min", "or", "and",
    "vector", "count", "topk", "time", "offset",
}  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label values and words removed)."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    return {
        word
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)
        if word not in PROMQL_WORDS and not word.startswith("$")
    }


def test_every_dashboard_query_names_a_metric_a_live_endpoint_exports(
    traced: TracedFleet,
) -> None:
    # At least one job done, so every histogram has observations.
    task_uuid = traced.send(7103, "obs_green")
    trace_of(traced, task_uuid, {"run/orchestrator.advance_stage"})
    text = scrape_metrics(traced)
    exported = exported_names(text)
    queries = dashboard_queries()
    titles = {title for title, _ in queries}
    for wanted in (
        "Jobs per minute by outcome",
        "Verdict latency (p50, p90, p99)",
        "Time per phase (p90)",
        "Queue depth (all priority lists)",
        "Retries and fail-closed jobs",
        "Workers online",
        "Containment mode of workers online",
    ):
        assert wanted in titles
    for title, expr in queries:
        read = metric_names_in(expr)
        assert read, f"{title}: no metric in {expr!r}"
        assert read <= exported, f"{title}: {sorted(read - exported)} not exported"
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert int(values['testgate_phase_duration_seconds_count{phase="suite"}']) >= 1
    assert int(values['testgate_phase_duration_seconds_count{phase="queue_wait"}']) >= 1
    # Every testgate worker on the broker says how it runs suites (in a whole run of the
    # suite another fleet's worker may be online too); the orchestrator's own Celery
    # worker (in this process, on the same broker) cannot, and counts as unknown. A
    # loaded machine may miss the broadcast's 1 s window once: scrape again.
    for _ in range(3):
        modes = {k: int(v) for k, v in values.items() if k.startswith("testgate_workers_")}
        online = modes.pop("testgate_workers_online", 0)
        known = sum(v for k, v in modes.items() if 'mode="unknown"' not in k)
        if known >= 1:
            break
        text = scrape_metrics(traced)
        values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
    assert known >= 1
    assert sum(modes.values()) == online
