import hashlib
import hmac
import json

import pytest

from tests.httpfixtures import Recorder, free_port, http_server
from worker.errors import WebhookError
from worker.notify.alerts import infra_exhausted_text, send_alert
from worker.notify.events import WebhookSender
from worker.notify.webhook import SIGNATURE_HEADER, post_json
from worker.settings import Settings


def no_sleep(_: float) -> None:
    return None


def test_a_post_is_retried_until_the_receiver_accepts_it() -> None:
    pauses: list[float] = []
    with http_server(rec=Recorder(fail_first=2)) as (base, rec):
        status = post_json(f"{base}/hook", {"a": 1}, sleep=pauses.append)
    assert status == 200
    assert len(rec.posts) == 3
    assert pauses == [1.0, 2.0]  # doubling backoff


def test_a_post_that_never_succeeds_raises_after_its_attempts() -> None:
    with pytest.raises(WebhookError, match="after 3 attempts"):
        post_json(f"http://127.0.0.1:{free_port()}/x", {}, attempts=3, sleep=no_sleep)


def test_a_signed_post_carries_an_hmac_of_the_exact_body() -> None:
    with http_server() as (base, rec):
        post_json(f"{base}/hook", {"b": 2, "a": 1}, secret="s3cret", sleep=no_sleep)
    _, headers, payload = rec.posts[0]
    body = json.dumps(payload, sort_keys=True).encode()
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected


def test_the_webhook_sender_posts_the_event_name_and_kwargs() -> None:
    with http_server() as (base, rec):
        WebhookSender(f"{base}/events").send("orchestrator.advance_stage", {"task_id": 3})
    assert rec.posts[0][2] == {"event": "orchestrator.advance_stage", "kwargs": {"task_id": 3}}


def test_an_alert_goes_to_the_webhook_and_telegram_when_configured() -> None:
    with http_server() as (base, rec):
        settings = Settings(
            alert_webhook_url=f"{base}/alert",
            telegram_bot_token="T0K",
            telegram_chat_id="42",
            telegram_api_base=base,
        )
        text = infra_exhausted_text("WI-1", "orchestrator", 3, "timed out")
        delivered = send_alert(settings, text)
    assert delivered == ["log", "webhook", "telegram"]
    paths = [path for path, _, _ in rec.posts]
    assert paths == ["/alert", "/botT0K/sendMessage"]
    assert "infrastructure, not a code defect" in rec.posts[0][2]["text"]
    assert rec.posts[1][2]["chat_id"] == "42"


def test_an_alert_with_nothing_configured_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert send_alert(Settings(), "disk full") == ["log"]
    assert "ALERT: disk full" in caplog.text


def test_an_undeliverable_alert_does_not_raise() -> None:
    settings = Settings(alert_webhook_url=f"http://127.0.0.1:{free_port()}/a")
    assert send_alert(settings, "x", post=lambda url, p: post_json(url, p, attempts=1)) == ["log"]


def test_an_alert_carries_no_configured_secret(caplog: pytest.LogCaptureFixture) -> None:
    with http_server() as (base, rec):
        settings = Settings(
            alert_webhook_url=f"{base}/alert",
            broker_url="redis://:broker-pw-9@127.0.0.1:6379/0",
            git_url_template="https://bot:git-token-9@git.example/{repo}.git",
        )
        why = "fetch of https://bot:git-token-9@git.example/r.git failed; redis broker-pw-9"
        send_alert(settings, infra_exhausted_text("WI-1", "r", 2, why))
    sent = rec.posts[0][2]["text"]
    assert "https://bot:***@git.example/r.git failed; redis ***" in sent
    assert "git-token-9" not in caplog.text and "broker-pw-9" not in caplog.text
