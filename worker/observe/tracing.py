"""The process's tracer provider, configured by the standard OTEL_* variables.

Nothing is installed unless the environment asks for traces (an OTLP endpoint, or
OTEL_TRACES_EXPORTER other than `none`): then OpenTelemetry's API stays the no-op it
is by default, and a fleet without a collector pays nothing but a few no-op calls. The
SDK reads the rest itself (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER,
OTEL_EXPORTER_OTLP_*, OTEL_BSP_*). The Celery instrumentation then carries the trace
context in every message this process publishes: the shards, the merge, and the
advance or hand-back the orchestrator handles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("testgate.tracing")

DEFAULT_SERVICE_NAME = "testgate-worker"
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_provider: Any = None


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces at all."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(environ)
    if exporters == ["none"]:
        return False
    return bool(exporters) or any(environ.get(name, "").strip() for name in _ENDPOINTS)


def configure_tracing(environ: Mapping[str, str], service_name: str = DEFAULT_SERVICE_NAME) -> bool:
    """Install the SDK's provider, its exporters and the Celery instrumentation, once
    per process (a pool process calls it after the fork). True when traces are on."""
    global _provider  # noqa: PLW0603 - one provider per process, as OpenTelemetry's API has
    if _provider is not None:
        return True
    if not tracing_requested(environ):
        return False
    # Imported only here: a fleet without a collector never loads the SDK.
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    names = [n for n in _exporter_names(environ) if n != "none"] or ["otlp"]
    for name in names:
        exporter = _exporter(name, environ)
        if exporter is not None:
            # Batched in a thread of its own: a slow or absent collector never holds a job.
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    # The instrumentation's constructor carries no annotations.
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _provider = provider
    logger.info("traces on: exporting with %s", ", ".join(names))
    return True


def shutdown_tracing() -> None:
    """Export what is still batched (a pool process that exits)."""
    if _provider is not None:
        _provider.shutdown()


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    raw = environ.get("OTEL_TRACES_EXPORTER", "")
    return [n.strip().lower() for n in raw.split(",") if n.strip()]


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "otlp":
        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        )
        if protocol and protocol != "http/protobuf":
            logger.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not installed; exporting with http/protobuf",
                protocol,
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    logger.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none)", name)
    return None
