"""Read-only HTTP smoke against the running service (docs/contract.md §7).

Only GETs. A refused connection or a timeout is transient and retried (3 attempts,
1 s apart) so one blip does not roll back a healthy branch; a reachable service that
answers wrongly fails at once.

A check's `contains` is sought in the body as it streams in, up to `max_body_bytes`
(TESTGATE_SMOKE_MAX_BODY_BYTES), and each GET has one deadline for all of it: a large
healthy answer is not failed for where its marker is, and a huge or trickling one
cannot hold the job.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger("testgate.smoke")

SmokeState = Literal["ok", "failed", "skipped"]
ATTEMPTS = 3
BACKOFF_S = 1.0
# The whole of one GET, not each read: what a slow or trickling service may take.
REQUEST_TIMEOUT_S = 5.0
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_CHUNK = 64 * 1024
# Redirects are followed, so a service that moved a path keeps passing; a bounded
# number, so a redirect loop is a wrong answer rather than a hang.
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class SmokeCheck:
    path: str
    status: int = 200
    contains: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # how far into the body `contains` is sought


@dataclass(frozen=True)
class SmokeResult:
    state: SmokeState
    detail: str


@dataclass(frozen=True)
class HttpAnswer:
    """A response, or `status=None` when the service could not be reached in time.
    `found`: whether the check's `contains` was in the first `scanned` bytes of the
    body; None when the check asks for nothing (the body is then not read)."""

    status: int | None
    found: bool | None = None
    scanned: int = 0
    error: str = ""


def http_get(url: str, check: SmokeCheck, timeout_s: float = REQUEST_TIMEOUT_S) -> HttpAnswer:
    """One GET for `check`, redirects followed, all within `timeout_s`; never raises.

    Unreachable (refused, DNS, timed out before the answer was judged) -> status None.
    Proxies are not used: the smoke talks to the service itself."""
    deadline = time.monotonic() + timeout_s
    try:
        for _ in range(_MAX_REDIRECTS + 1):
            status, location, found, scanned = _get_once(url, check, deadline)
            if status == check.status or status not in _REDIRECT_STATUSES or not location:
                return HttpAnswer(status=status, found=found, scanned=scanned)
            url = urllib.parse.urljoin(url, location)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # TimeoutError is an OSError: a timeout is transient, like a refusal.
        return HttpAnswer(status=None, error=f"{type(exc).__name__}: {exc}")
    return HttpAnswer(status=None, error=f"more than {_MAX_REDIRECTS} redirects")


def _get_once(
    url: str, check: SmokeCheck, deadline: float
) -> tuple[int, str | None, bool | None, int]:
    """(status, Location, found, bytes scanned) of one GET; raises on transport errors."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = connection_class(parts.hostname, parts.port, timeout=_remaining(deadline))
    try:
        conn.connect()
        # Held here: http.client drops its own reference once a `Connection: close`
        # response is read, but the socket stays open for the response's reads, and
        # its timeout is how each read is cut to what is left of the deadline.
        sock = conn.sock
        if sock is None:
            raise ConnectionError("connected without a socket")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target)
        sock.settimeout(_remaining(deadline))
        response = conn.getresponse()
        location = response.getheader("Location")
        if check.contains is None or response.status != check.status:
            return response.status, location, None, 0  # the status alone decides
        found, scanned = _scan_body(response, sock, check, deadline)
        return response.status, location, found, scanned
    finally:
        conn.close()


def _scan_body(
    response: http.client.HTTPResponse, sock: socket.socket, check: SmokeCheck, deadline: float
) -> tuple[bool, int]:
    """Whether `check.contains` lies within the first `check.max_body_bytes` of the
    body, reading no further than needed; TimeoutError when the deadline comes first."""
    needle = (check.contains or "").encode("utf-8")
    keep = len(needle) - 1  # a match may straddle two chunks
    window = b""
    scanned = 0
    while needle and scanned < check.max_body_bytes:
        sock.settimeout(_remaining(deadline))
        chunk = response.read1(min(_CHUNK, check.max_body_bytes - scanned))
        if not chunk:
            return False, scanned  # the whole body, and no match
        scanned += len(chunk)
        window = (window[len(window) - keep :] if keep else b"") + chunk
        if needle in window:
            return True, scanned
    return not needle, scanned


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no complete answer within the smoke's time bound")
    return left


def skipped(reason: str) -> SmokeResult:
    return SmokeResult(state="skipped", detail=reason)


def run_smoke(
    base_url: str, checks: Sequence[SmokeCheck], *, sleep: Callable[[float], None] = time.sleep
) -> SmokeResult:
    """Run every check in order; the first failing one decides. Never raises."""
    base = base_url.rstrip("/")
    for check in checks:
        problem = _run_check(base + check.path, check, sleep)
        if problem:
            logger.warning("smoke %s failed: %s", base + check.path, problem)
            return SmokeResult(state="failed", detail=f"GET {check.path}: {problem}")
    paths = ", ".join(c.path for c in checks)
    return SmokeResult(state="ok", detail=f"all checks passed ({paths})")


def _run_check(url: str, check: SmokeCheck, sleep: Callable[[float], None]) -> str | None:
    """None when the check passes, else what was wrong."""
    answer = HttpAnswer(status=None)
    for attempt in range(1, ATTEMPTS + 1):
        answer = http_get(url, check)
        if answer.status is not None:
            return _judge(answer, check)
        logger.info(
            "smoke %s unreachable (attempt %d/%d): %s", url, attempt, ATTEMPTS, answer.error
        )
        if attempt < ATTEMPTS:
            sleep(BACKOFF_S)
    return f"unreachable after {ATTEMPTS} attempts ({answer.error})"


def _judge(answer: HttpAnswer, check: SmokeCheck) -> str | None:
    if answer.status != check.status:
        return f"HTTP {answer.status}, expected {check.status}"
    if check.contains is not None and not answer.found:
        return (
            f"body does not contain {check.contains!r} "
            f"(searched {answer.scanned} bytes, bound {check.max_body_bytes})"
        )
    return None
