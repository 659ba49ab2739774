"""JSON POSTs with retry and backoff, optionally signed (for orchestrators without
Celery, and for alerts)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from worker.errors import WebhookError

logger = logging.getLogger("testgate.webhook")

SIGNATURE_HEADER = "X-Testgate-Signature"
REQUEST_TIMEOUT_S = 10.0


def post_json(
    url: str,
    payload: dict[str, Any],
    *,
    secret: str = "",
    attempts: int = 5,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST `payload`; retry on network errors and 5xx/429 with doubling backoff.

    Returns the final HTTP status (2xx). Raises WebhookError when every attempt
    failed or the receiver answered with a 4xx that retrying cannot fix.
    """
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json"}
    if secret:  # `sha256=<hex>` HMAC of the exact body, as GitHub-style receivers expect
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers[SIGNATURE_HEADER] = f"sha256={digest}"
    problem = ""
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                raise WebhookError(f"POST {url} refused: {problem}") from exc
        except (urllib.error.URLError, OSError) as exc:
            problem = str(exc)
        logger.warning("POST %s failed (attempt %d/%d): %s", url, attempt, attempts, problem)
        if attempt < attempts:
            sleep(backoff_s * 2 ** (attempt - 1))
    raise WebhookError(f"POST {url} failed after {attempts} attempts: {problem}")
