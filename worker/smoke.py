"""Read-only HTTP smoke against the running service (docs/contract.md §7).

Only GETs. A refused connection or a timeout is transient and retried (3 attempts,
1 s apart) so one blip does not roll back a healthy branch; a reachable service that
answers wrongly fails at once.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger("testgate.smoke")

SmokeState = Literal["ok", "failed", "skipped"]
ATTEMPTS = 3
BACKOFF_S = 1.0
REQUEST_TIMEOUT_S = 5.0
_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class SmokeCheck:
    path: str
    status: int = 200
    contains: str | None = None


@dataclass(frozen=True)
class SmokeResult:
    state: SmokeState
    detail: str


@dataclass(frozen=True)
class HttpAnswer:
    """A response, or `status=None` when the service could not be reached."""

    status: int | None
    body: str
    error: str = ""


Fetch = Callable[[str], HttpAnswer]


def http_get(url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> HttpAnswer:
    """One GET; never raises. Unreachable (refused, timeout, DNS) -> status None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            body = response.read(_BODY_LIMIT).decode("utf-8", "replace")
            return HttpAnswer(status=response.status, body=body)
    except urllib.error.HTTPError as exc:
        # urllib raises for >= 400, but that is a real answer, not an outage.
        body = exc.read(_BODY_LIMIT).decode("utf-8", "replace") if exc.fp else ""
        return HttpAnswer(status=exc.code, body=body)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return HttpAnswer(status=None, body="", error=str(exc))


def skipped(reason: str) -> SmokeResult:
    return SmokeResult(state="skipped", detail=reason)


def run_smoke(
    base_url: str,
    checks: Sequence[SmokeCheck],
    *,
    fetch: Fetch = http_get,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> SmokeResult:
    """Run every check in order; the first failing one decides. Never raises."""
    base = base_url.rstrip("/")
    for check in checks:
        problem = _run_check(base + check.path, check, fetch, sleep, attempts, backoff_s)
        if problem:
            logger.warning("smoke %s failed: %s", base + check.path, problem)
            return SmokeResult(state="failed", detail=f"GET {check.path}: {problem}")
    paths = ", ".join(c.path for c in checks)
    return SmokeResult(state="ok", detail=f"all checks passed ({paths})")


def _run_check(
    url: str,
    check: SmokeCheck,
    fetch: Fetch,
    sleep: Callable[[float], None],
    attempts: int,
    backoff_s: float,
) -> str | None:
    """None when the check passes, else what was wrong."""
    answer = HttpAnswer(status=None, body="")
    for attempt in range(1, attempts + 1):
        answer = fetch(url)
        if answer.status is not None:
            return _judge(answer, check)
        logger.info(
            "smoke %s unreachable (attempt %d/%d): %s", url, attempt, attempts, answer.error
        )
        if attempt < attempts:
            sleep(backoff_s)
    return f"unreachable after {attempts} attempts ({answer.error})"


def _judge(answer: HttpAnswer, check: SmokeCheck) -> str | None:
    if answer.status != check.status:
        return f"HTTP {answer.status}, expected {check.status}"
    if check.contains is not None and check.contains not in answer.body:
        return f"body does not contain {check.contains!r}"
    return None
