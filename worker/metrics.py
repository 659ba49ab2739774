"""Prometheus metrics of the gate itself, served by `testgate metrics --port`.

Everything comes from state shared by the fleet (the counters in Redis, the broker's
queue, a ping of the workers), so any one metrics process reports for all workers.
The text format is simple enough to write by hand; no client library is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from worker.state import GateState

logger = logging.getLogger("testgate.metrics")

# Seconds; the last finite bucket is the default suite timeout.
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 900)
# The phases of a job, in the order they happen (worker.observe.phases times them).
PHASES = (
    "queue_wait",
    "checkout",
    "setup",
    "collect",
    "suite",
    "smoke",
    "report",
    "push",
    "announce",
)
# Seconds; phases range from a few milliseconds (render a report) to a whole suite.
PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)
# How suites run on a worker: contained by bubblewrap, uncontained (TESTGATE_CONTAINMENT=auto
# without bubblewrap) or off (the operator's choice); unknown for a worker that cannot say.
CONTAINMENT_MODES = ("contained", "uncontained", "off", "unknown")


def observe_suite_duration(state: GateState, seconds: float) -> None:
    """Record one suite's wall time in the fleet-wide histogram (cumulative buckets)."""
    amounts = {f"duration_le_{bound}": 1 for bound in DURATION_BUCKETS if seconds <= bound}
    state.bump_many(amounts | {"duration_count": 1, "duration_sum_ms": round(seconds * 1000)})


def observe_phase_durations(
    state: GateState, timings: Mapping[str, float], verdict_latency_s: float | None = None
) -> None:
    """Record one delivery's phase times (and, for a delivery that reached a verdict,
    the time from its enqueue to that verdict) in the fleet-wide histograms. Each time
    is counted in its own bucket only; rendering makes the buckets cumulative, so one
    delivery costs one round trip of a few counters, not one per bucket."""
    amounts: dict[str, int] = {}
    for phase, seconds in timings.items():
        if phase in PHASES:
            amounts |= _histogram_amounts(f"phase_{phase}", seconds)
    if verdict_latency_s is not None:
        amounts |= _histogram_amounts("verdict_latency", verdict_latency_s)
    state.bump_many(amounts)


def _histogram_amounts(key: str, seconds: float) -> dict[str, int]:
    bucket = next((str(b) for b in PHASE_BUCKETS if seconds <= b), "inf")
    return {f"{key}_in_{bucket}": 1, f"{key}_sum_ms": round(seconds * 1000)}


def render_metrics(
    counters: Mapping[str, int],
    queue_depth: int | None,
    workers_online: int | None,
    containment: Mapping[str, int] | None = None,
) -> str:
    """The Prometheus text exposition of the gate's metrics (pure)."""
    lines = _header("testgate_jobs_total", "counter", "Tester jobs by outcome, fleet-wide.")
    # The verdicts are counted as `outcome_<outcome>`, the other two under their own names.
    keys = {o: f"outcome_{o}" for o in ("code-pass", "code-fail", "tool-error")}
    for outcome, key in (keys | {"deferred": "deferred", "handed-back": "handed_back"}).items():
        lines.append(f'testgate_jobs_total{{outcome="{outcome}"}} {counters.get(key, 0)}')
    lines += _header(
        "testgate_suite_duration_seconds", "histogram", "Wall time of suites that ran."
    )
    for bound in DURATION_BUCKETS:
        count = counters.get(f"duration_le_{bound}", 0)
        lines.append(f'testgate_suite_duration_seconds_bucket{{le="{bound}"}} {count}')
    total = counters.get("duration_count", 0)
    lines.append(f'testgate_suite_duration_seconds_bucket{{le="+Inf"}} {total}')
    lines.append(f"testgate_suite_duration_seconds_sum {counters.get('duration_sum_ms', 0) / 1000}")
    lines.append(f"testgate_suite_duration_seconds_count {total}")
    lines += _phase_histograms(counters)
    for name, value, text in (
        ("testgate_queue_depth", queue_depth, "Jobs waiting on the tests queue."),
        ("testgate_workers_online", workers_online, "Workers answering a ping."),
    ):
        lines += _header(name, "gauge", text)
        if value is not None:
            lines.append(f"{name} {value}")
    text = "Workers online by how their suites run."
    lines += _header("testgate_workers_containment", "gauge", text)
    if containment is not None:
        for mode in CONTAINMENT_MODES:
            count = containment.get(mode, 0)
            lines.append(f'testgate_workers_containment{{mode="{mode}"}} {count}')
    return "\n".join(lines) + "\n"


def _phase_histograms(counters: Mapping[str, int]) -> list[str]:
    name = "testgate_phase_duration_seconds"
    lines = _header(name, "histogram", "Time of each phase of a job delivery.")
    for phase in PHASES:
        lines += _histogram_lines(name, f'phase="{phase}"', f"phase_{phase}", counters)
    name = "testgate_verdict_latency_seconds"
    text = "From a job's enqueue (or its merge's, when sharded) to its verdict."
    lines += _header(name, "histogram", text)
    lines += _histogram_lines(name, "", "verdict_latency", counters)
    return lines


def _header(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _histogram_lines(name: str, labels: str, key: str, counters: Mapping[str, int]) -> list[str]:
    lines = []
    sep = "," if labels else ""
    running = 0
    for bound in PHASE_BUCKETS:
        running += counters.get(f"{key}_in_{bound}", 0)
        lines.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
    total = running + counters.get(f"{key}_in_inf", 0)
    lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {total}')
    braces = f"{{{labels}}}" if labels else ""
    lines.append(f"{name}_sum{braces} {counters.get(f'{key}_sum_ms', 0) / 1000}")
    lines.append(f"{name}_count{braces} {total}")
    return lines


def serve_metrics(
    port: int, collect: Callable[[], str], host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """An HTTP server answering GET /metrics with `collect()`; call serve_forever on it."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            logger.debug(format, *args)

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = collect().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return ThreadingHTTPServer((host, port), Handler)
