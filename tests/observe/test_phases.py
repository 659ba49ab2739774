"""Per-phase timings and the switch that turns traces on."""

from __future__ import annotations

import re

from worker.metrics import PHASES, render_metrics
from worker.observe import JobPhases, tracing_requested
from worker.report.sections import phases_section
from worker.state import MemoryState


def test_traces_are_on_only_when_the_standard_variables_ask_for_them() -> None:
    assert not tracing_requested({})
    assert not tracing_requested({"OTEL_SERVICE_NAME": "x"})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none"})
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not tracing_requested({**endpoint, "OTEL_SDK_DISABLED": "true"})


def test_a_delivery_s_phases_are_timed_in_order_and_reach_the_fleet_histograms() -> None:
    state = MemoryState()
    phases = JobPhases(state)
    with phases.job("testgate.job", attempt=0):
        phases.waited(0.2)
        with phases.phase("checkout"):
            pass
        with phases.phase("suite"):
            pass
        phases.conclude("code-pass", "PASS")
    names = [name for name, _ in phases.timings()]
    assert names == ["queue_wait", "checkout", "suite"]
    assert dict(phases.timings())["queue_wait"] == 0.2
    text = render_metrics(state.counters(), 0, 1)
    assert 'testgate_phase_duration_seconds_count{phase="queue_wait"} 1' in text
    assert 'testgate_phase_duration_seconds_bucket{phase="queue_wait",le="0.1"} 0' in text
    assert 'testgate_phase_duration_seconds_bucket{phase="queue_wait",le="0.25"} 1' in text
    assert 'testgate_phase_duration_seconds_count{phase="smoke"} 0' in text
    assert "testgate_verdict_latency_seconds_count 1" in text
    for phase in PHASES:  # every phase is exported, observed or not
        assert f'testgate_phase_duration_seconds_sum{{phase="{phase}"}}' in text


def test_a_delivery_without_a_verdict_records_no_verdict_latency() -> None:
    state = MemoryState()
    phases = JobPhases(state)
    with phases.job("testgate.job", attempt=1):
        phases.conclude("deferred")
    assert "testgate_verdict_latency_seconds_count 0" in render_metrics(state.counters(), 0, 1)


def test_the_report_s_timing_table_is_short_and_plain() -> None:
    text = phases_section((("queue_wait", 0.012), ("suite", 1.5)))
    assert "| queue wait | 0.01 |" in text
    assert "| suite | 1.50 |" in text
    many = phases_section(tuple((f"p{i}", 1.0) for i in range(100)))
    assert len(re.findall(r"^\| p\d+ \|", many, re.M)) == 20


def test_containment_modes_are_exported_for_every_mode() -> None:
    text = render_metrics({}, 0, 2, {"contained": 2})
    assert 'testgate_workers_containment{mode="contained"} 2' in text
    assert 'testgate_workers_containment{mode="uncontained"} 0' in text
