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
OUTCOMES = ("code-pass", "code-fail", "tool-error", "deferred", "handed-back")


def observe_suite_duration(state: GateState, seconds: float) -> None:
    """Record one suite's wall time in the fleet-wide histogram (cumulative buckets)."""
    for bound in DURATION_BUCKETS:
        if seconds <= bound:
            state.bump(f"duration_le_{bound}")
    state.bump("duration_count")
    state.bump("duration_sum_ms", round(seconds * 1000))


def outcome_counts(counters: Mapping[str, int]) -> dict[str, int]:
    verdicts = {
        o: counters.get(f"outcome_{o}", 0) for o in ("code-pass", "code-fail", "tool-error")
    }
    return verdicts | {
        "deferred": counters.get("deferred", 0),
        "handed-back": counters.get("handed_back", 0),
    }


def render_metrics(
    counters: Mapping[str, int], queue_depth: int | None, workers_online: int | None
) -> str:
    """The Prometheus text exposition of the gate's metrics (pure)."""
    lines = [
        "# HELP testgate_jobs_total Tester jobs by outcome, fleet-wide.",
        "# TYPE testgate_jobs_total counter",
    ]
    for outcome, count in outcome_counts(counters).items():
        lines.append(f'testgate_jobs_total{{outcome="{outcome}"}} {count}')
    lines += [
        "# HELP testgate_suite_duration_seconds Wall time of suites that ran.",
        "# TYPE testgate_suite_duration_seconds histogram",
    ]
    for bound in DURATION_BUCKETS:
        count = counters.get(f"duration_le_{bound}", 0)
        lines.append(f'testgate_suite_duration_seconds_bucket{{le="{bound}"}} {count}')
    total = counters.get("duration_count", 0)
    lines.append(f'testgate_suite_duration_seconds_bucket{{le="+Inf"}} {total}')
    lines.append(f"testgate_suite_duration_seconds_sum {counters.get('duration_sum_ms', 0) / 1000}")
    lines.append(f"testgate_suite_duration_seconds_count {total}")
    for name, value, text in (
        ("testgate_queue_depth", queue_depth, "Jobs waiting on the tests queue."),
        ("testgate_workers_online", workers_online, "Workers answering a ping."),
    ):
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        if value is not None:
            lines.append(f"{name} {value}")
    return "\n".join(lines) + "\n"


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
