"""The phases of one delivery of a job: each one a span (when traces are on) and a
duration, for the report's table and the fleet's histograms.

A delivery's root span (`testgate.job`, `testgate.shard`, `testgate.merge`) carries
what identifies the job (repo, task id, work item, attempt) and how it ended (outcome,
verdict). Spans hold only what the worker decided or measured: never the suite's
environment, its output, or the text of a test id.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span

from worker.job import Job
from worker.metrics import observe_phase_durations
from worker.state import GateState

_tracer = trace.get_tracer("testgate")

Attribute = str | int | float | bool


class JobPhases:
    """Times the phases of one delivery; `job()` opens its root span and, when it
    closes, adds the phase times to the fleet-wide histograms."""

    def __init__(self, state: GateState | None = None) -> None:
        self._state = state
        self._timings: dict[str, float] = {}
        self._root: Span = trace.INVALID_SPAN
        self._started = time.perf_counter()
        self._verdict_latency_s: float | None = None

    @contextmanager
    def job(self, name: str, *, attempt: int, **attributes: Attribute) -> Iterator[None]:
        """The delivery's root span (a child of the Celery task's, when there is one)."""
        with _tracer.start_as_current_span(
            name, attributes={"testgate.attempt": attempt, **_prefixed(attributes)}
        ) as root:
            self._root = root
            self._started = time.perf_counter()
            try:
                yield
            finally:
                if self._state is not None:
                    observe_phase_durations(self._state, self._timings, self._verdict_latency_s)

    def describe(self, job: Job) -> None:
        """The job's identity on the root span, once the job is known to be valid."""
        self._root.set_attributes(
            {
                "testgate.repo": job.repo,
                "testgate.task_id": job.task_id,
                "testgate.work_item": job.work_item_id,
                "testgate.branch": job.branch,
            }
        )
        if job.commit:
            self._root.set_attribute("testgate.commit", job.commit)

    def conclude(self, outcome: str, verdict: str | None = None) -> None:
        """How the delivery ended: the outcome (code-pass, code-fail, tool-error, or the
        kind of a result without a verdict: deferred, handed-back, ...) and PASS/FAIL."""
        self._root.set_attribute("testgate.outcome", outcome)
        if verdict is not None:
            self._root.set_attribute("testgate.verdict", verdict)
            waited = self._timings.get("queue_wait", 0.0)
            self._verdict_latency_s = waited + time.perf_counter() - self._started

    @contextmanager
    def phase(self, name: str, **attributes: Attribute) -> Iterator[Span]:
        """Time one phase; the span is the current one inside, so what the phase
        publishes (shards, the advance) is its child."""
        started = time.perf_counter()
        with _tracer.start_as_current_span(
            f"testgate.{name}", attributes=_prefixed(attributes)
        ) as span:
            try:
                yield span
            finally:
                self._add(name, time.perf_counter() - started)

    def waited(self, seconds: float) -> None:
        """The time the message waited on the broker before this delivery took it."""
        seconds = max(0.0, seconds)
        end = time.time_ns()
        span = _tracer.start_span("testgate.queue_wait", start_time=end - int(seconds * 1e9))
        span.end(end_time=end)
        self._add("queue_wait", seconds)

    def timings(self) -> tuple[tuple[str, float], ...]:
        """The phases timed so far, in the order they first happened."""
        return tuple(self._timings.items())

    def _add(self, name: str, seconds: float) -> None:
        self._timings[name] = self._timings.get(name, 0.0) + seconds


def _prefixed(attributes: Mapping[str, Attribute]) -> dict[str, Attribute]:
    return {f"testgate.{key}": value for key, value in attributes.items()}
