"""Configured secrets masked in every text the report or an event carries (pure).

The last line behind keeping secrets out of a suite's reach: should a suite print one
anyway (or a tool's error quote a URL), the report on the branch, the events the
orchestrator reads and the alerts show `***` instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from worker.settings import Settings

MASK = "***"
# A shorter value would be found all over an honest text (a one-letter password turns
# every such letter into `***`): a secret this short is not worth having anyway.
MIN_SECRET_CHARS = 4


def url_secrets(url: str) -> tuple[str, ...]:
    """The password (and user) a URL carries, as written and percent-decoded."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found = (parts.password, parts.username if parts.password is None else None)
    return tuple({form for s in found if s for form in (s, unquote(s))})


def configured_secrets(settings: Settings) -> tuple[str, ...]:
    """Every secret of `settings` (passwords in its URLs, the webhook secret, the bot
    token), longest first."""
    urls = (settings.broker_url, settings.result_backend, settings.state_url)
    found = [s for url in urls for s in url_secrets(url)]
    found += url_secrets(settings.git_url_template.replace("{repo}", "repo"))
    found += [settings.webhook_secret, settings.telegram_bot_token]
    return tuple(sorted({s for s in found if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True))


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each of `secrets` replaced by `***` (longest
    first, so that a secret containing another is masked whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_CHARS:
            text = text.replace(secret, MASK)
    return text


def mask_payload(value: Any, secrets: Iterable[str]) -> Any:
    """A JSON-like value (an event's kwargs) with every string in it masked."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {mask_payload(k, secrets): mask_payload(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_payload(v, secrets) for v in value)
    return value
