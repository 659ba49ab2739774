"""Configured secrets never appear in a report's or an event's text."""

from __future__ import annotations

from worker.masking import configured_secrets, mask, mask_payload, url_secrets
from worker.settings import load_settings


def test_every_configured_secret_is_found() -> None:
    settings = load_settings(
        broker_url="amqp://gate:broker-pw@127.0.0.1:5672//",
        result_backend="redis://:backend%2Fpw@127.0.0.1:6379/1",
        state_url="redis://user:state-pw@127.0.0.1:6379/2",
        git_url_template="https://bot:ghp_token123@git.example/{repo}.git",
        webhook_secret="hook-secret",
        telegram_bot_token="123:bot-token",
    )
    assert set(configured_secrets(settings)) == {
        "broker-pw",
        "backend%2Fpw",
        "backend/pw",
        "state-pw",
        "ghp_token123",
        "hook-secret",
        "123:bot-token",
    }


def test_urls_without_credentials_and_empty_settings_give_no_secret() -> None:
    settings = load_settings(
        broker_url="redis://127.0.0.1:6379/0",
        result_backend="redis://127.0.0.1:6379/1",
        git_url_template="/srv/git/{repo}.git",
        webhook_secret="",
        telegram_bot_token="",
    )
    assert configured_secrets(settings) == ()
    assert url_secrets("https://token-only@git.example/r.git") == ("token-only",)


def test_each_occurrence_is_masked_the_longest_secret_first() -> None:
    text = "url https://u:abcd1234@h/ then abcd1234 and abcd12345678\n"
    assert mask(text, ["abcd1234", "abcd12345678"]) == "url https://u:***@h/ then *** and ***\n"


def test_a_secret_too_short_to_tell_from_honest_text_is_left() -> None:
    assert mask("a b abc", ["a", "abc"]) == "a b abc"


def test_an_event_payload_is_masked_in_every_string_it_holds() -> None:
    payload = {
        "task_id": 7,
        "reason": "saw s3cr3t-token",
        "failure_packet": {"failures": [{"message": "s3cr3t-token leaked"}], "count": 1},
        "report_pushed": True,
    }
    assert mask_payload(payload, ["s3cr3t-token"]) == {
        "task_id": 7,
        "reason": "saw ***",
        "failure_packet": {"failures": [{"message": "*** leaked"}], "count": 1},
        "report_pushed": True,
    }
