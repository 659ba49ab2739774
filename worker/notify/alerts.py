"""Infrastructure alerts: a webhook POST and/or Telegram; the log always.

An alert is best-effort: it is logged first, so losing the HTTP side loses nothing
an operator could not find, and it never raises into the gate.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from worker.errors import WebhookError
from worker.masking import configured_secrets, mask
from worker.notify.webhook import post_json
from worker.settings import Settings

logger = logging.getLogger("testgate.alerts")

Poster = Callable[[str, dict[str, Any]], object]
_post_retried = functools.partial(post_json, attempts=3)


def send_alert(settings: Settings, text: str, post: Poster = _post_retried) -> list[str]:
    """Send `text` everywhere configured, its secrets masked; return where it was
    delivered."""
    text = mask(text, configured_secrets(settings))
    logger.error("ALERT: %s", text)
    delivered = ["log"]
    webhook_payload = {"text": text, "source": "testgate"}
    if settings.alert_webhook_url and _try(post, settings.alert_webhook_url, webhook_payload):
        delivered.append("webhook")
    if settings.telegram_bot_token and settings.telegram_chat_id:
        url = (
            f"{settings.telegram_api_base.rstrip('/')}/bot{settings.telegram_bot_token}/sendMessage"
        )
        if _try(post, url, {"chat_id": settings.telegram_chat_id, "text": text}):
            delivered.append("telegram")
    return delivered


def infra_exhausted_text(work_item_id: str, repo: str, attempts: int, why: str) -> str:
    return (
        f"testgate: the regression suite for {work_item_id} ({repo}) never executed after "
        f"{attempts} attempt(s): {why}. This is infrastructure, not a code defect. "
        "The job failed closed (FAIL, rolled back to development); check the test workers."
    )


def _try(post: Poster, url: str, payload: dict[str, Any]) -> bool:
    try:
        post(url, payload)
        return True
    except (WebhookError, OSError, ValueError) as exc:
        # The token is part of a Telegram URL: log the host part only.
        logger.warning("alert not delivered to %s: %s", url.split("/bot", maxsplit=1)[0], exc)
        return False
