"""Writes deploy/grafana/testgate.json, the fleet's Grafana dashboard (plain JSON, schema
of Grafana 10+). Edit the panels here and run `python deploy/grafana/build.py`;
tests/integration/test_observability.py checks every query against a live /metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panel(
    title: str,
    targets: list[tuple[str, str]],
    *,
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    kind: str = "timeseries",
    unit: str = "short",
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def quantile(q: float, metric: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket[$__rate_interval])))"


PANELS = [
    panel(
        "Jobs per minute by outcome",
        [("sum by (outcome) (rate(testgate_jobs_total[$__rate_interval])) * 60", "{{outcome}}")],
        x=0,
        y=0,
        unit="short",
    ),
    panel(
        "Verdict latency (p50, p90, p99)",
        [
            (quantile(q, "testgate_verdict_latency_seconds"), f"p{round(q * 100)}")
            for q in (0.5, 0.9, 0.99)
        ],
        x=12,
        y=0,
        unit="s",
    ),
    panel(
        "Time per phase (p90)",
        [(quantile(0.9, "testgate_phase_duration_seconds", "le, phase"), "{{phase}}")],
        x=0,
        y=8,
        unit="s",
    ),
    panel(
        "Mean time per phase",
        [
            (
                "sum by (phase) (rate(testgate_phase_duration_seconds_sum[$__rate_interval]))"
                " / sum by (phase) (rate(testgate_phase_duration_seconds_count"
                "[$__rate_interval]))",
                "{{phase}}",
            )
        ],
        x=12,
        y=8,
        unit="s",
    ),
    panel(
        "Queue depth (all priority lists)",
        [("testgate_queue_depth", "tests")],
        x=0,
        y=16,
        w=8,
    ),
    panel(
        "Retries and fail-closed jobs",
        [
            ('sum(increase(testgate_jobs_total{outcome="deferred"}[$__range]))', "retried"),
            ('sum(increase(testgate_jobs_total{outcome="tool-error"}[$__range]))', "failed closed"),
        ],
        x=8,
        y=16,
        w=8,
        kind="stat",
    ),
    panel("Workers online", [("testgate_workers_online", "online")], x=16, y=16, w=8, kind="stat"),
    panel(
        "Containment mode of workers online",
        [("testgate_workers_containment", "{{mode}}")],
        x=0,
        y=24,
        w=24,
        kind="bargauge",
    ),
]

DASHBOARD = {
    "uid": "testgate-fleet",
    "title": "testgate fleet",
    "tags": ["testgate"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {
        "list": [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
            }
        ]
    },
    "panels": PANELS,
}


def main() -> None:
    out = Path(__file__).with_name("testgate.json")
    out.write_text(json.dumps(DASHBOARD, indent=2) + "\n")


if __name__ == "__main__":
    main()
