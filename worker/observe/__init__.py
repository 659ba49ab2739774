"""Where a job's time went: OpenTelemetry traces (configured by the standard OTEL_*
variables, a no-op without them) and per-phase timings for the report and the metrics.

Imports only the vocabulary below it; every layer above may time its steps.
"""

from worker.observe.phases import JobPhases
from worker.observe.tracing import configure_tracing, shutdown_tracing, tracing_requested

__all__ = [
    # per-phase timings and spans of one delivery
    "JobPhases",
    # the process's tracer provider
    "configure_tracing",
    "shutdown_tracing",
    "tracing_requested",
]
