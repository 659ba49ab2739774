import time
from contextlib import ExitStack

import pytest

from tests.httpfixtures import free_port, healthy_routes, http_server, trickling_server
from worker.contracts import DEFAULT_SMOKE_CHECKS, builtin_contract, parse_contracts
from worker.settings import Settings
from worker.smoke import SmokeCheck, http_get, run_smoke


def no_sleep(_: float) -> None:
    return None


def test_a_healthy_service_passes_every_default_check() -> None:
    with http_server(healthy_routes()) as (base, rec):
        result = run_smoke(base, DEFAULT_SMOKE_CHECKS, sleep=no_sleep)
    assert result.state == "ok"
    assert rec.gets == ["/health", "/status", "/queue"]


def test_a_500_fails_at_once_without_retrying() -> None:
    routes = healthy_routes() | {"/status": (500, "boom")}
    with http_server(routes) as (base, rec):
        result = run_smoke(base, DEFAULT_SMOKE_CHECKS, sleep=no_sleep)
    assert result.state == "failed"
    assert "/status" in result.detail and "HTTP 500" in result.detail
    assert rec.gets == ["/health", "/status"]


def test_a_queue_without_serial_gate_fails() -> None:
    routes = healthy_routes() | {"/queue": (200, '{"jobs": []}')}
    with http_server(routes) as (base, _):
        result = run_smoke(base, DEFAULT_SMOKE_CHECKS, sleep=no_sleep)
    assert result.state == "failed"
    assert "serial_gate" in result.detail


def test_a_service_that_never_answers_fails_after_three_attempts_one_second_apart() -> None:
    pauses: list[float] = []
    result = run_smoke(f"http://127.0.0.1:{free_port()}", DEFAULT_SMOKE_CHECKS, sleep=pauses.append)
    assert result.state == "failed"
    assert "unreachable after 3 attempts" in result.detail
    assert pauses == [1.0, 1.0]


def test_a_service_refused_at_first_then_up_passes() -> None:
    port = free_port()
    with ExitStack() as stack:

        def start_server(_: float) -> None:
            # The service comes up during the runner's 1 s pause after a refusal.
            stack.enter_context(http_server(healthy_routes(), port=port))

        result = run_smoke(f"http://127.0.0.1:{port}", DEFAULT_SMOKE_CHECKS, sleep=start_server)
    assert result.state == "ok"


def queue_body(marker_at: int) -> str:
    """A JSON `/queue` answer whose `serial_gate` key starts `marker_at` bytes in."""
    head = '{"jobs": "'
    padding = "x" * (marker_at - len(head) - len('", "'))
    body = f'{head}{padding}", "serial_gate": {{"busy": false}}}}'
    assert body.index("serial_gate") == marker_at
    return body


def checks_of(settings: Settings) -> tuple[SmokeCheck, ...]:
    """The smoke checks a worker with `settings` runs for the self-hosting repo."""
    return builtin_contract(settings).smoke_checks


def test_serial_gate_after_the_first_64_kib_passes() -> None:
    routes = healthy_routes() | {"/queue": (200, queue_body(300 * 1024))}
    with http_server(routes) as (base, _):
        result = run_smoke(base, checks_of(Settings()), sleep=no_sleep)
    assert result.state == "ok", result.detail


def test_serial_gate_split_across_two_reads_is_found() -> None:
    # The marker starts 5 bytes before the end of the first 64 KiB chunk.
    routes = healthy_routes() | {"/queue": (200, queue_body(64 * 1024 - 5))}
    with http_server(routes) as (base, _):
        result = run_smoke(base, checks_of(Settings()), sleep=no_sleep)
    assert result.state == "ok", result.detail


def test_the_default_bound_is_one_mib() -> None:
    assert Settings().smoke_max_body_bytes == 1024 * 1024
    inside = healthy_routes() | {"/queue": (200, queue_body(1024 * 1024 - 40))}
    beyond = healthy_routes() | {"/queue": (200, queue_body(1024 * 1024 + 10))}
    with http_server(inside) as (base, _):
        assert run_smoke(base, checks_of(Settings()), sleep=no_sleep).state == "ok"
    with http_server(beyond) as (base, _):
        result = run_smoke(base, checks_of(Settings()), sleep=no_sleep)
    assert result.state == "failed"
    assert f"searched {1024 * 1024} bytes" in result.detail


def test_the_body_bound_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTGATE_SMOKE_MAX_BODY_BYTES", str(100 * 1024))
    routes = healthy_routes() | {"/queue": (200, queue_body(200 * 1024))}
    with http_server(routes) as (base, rec):
        result = run_smoke(base, checks_of(Settings()), sleep=no_sleep)
    # Past the bound the body is a wrong answer, failed at once, not an outage.
    assert result.state == "failed"
    assert "does not contain 'serial_gate'" in result.detail
    assert f"bound {100 * 1024}" in result.detail
    assert rec.gets == ["/health", "/status", "/queue"]


def test_a_bad_body_bound_falls_back_to_one_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTGATE_SMOKE_MAX_BODY_BYTES", "0")
    assert Settings().smoke_max_body_bytes == 1024 * 1024


def test_a_contracts_file_check_gets_the_bound_too() -> None:
    settings = Settings(smoke_max_body_bytes=4096)
    data = {"repos": {"web": {"smoke": [{"path": "/ready", "contains": "up"}]}}}
    contract = parse_contracts(data, settings).for_repo("web")
    assert contract is not None
    assert contract.smoke_checks == (SmokeCheck(path="/ready", contains="up", max_body_bytes=4096),)


def test_a_trickling_answer_is_cut_by_the_whole_time_bound() -> None:
    # One byte every 50 ms: no single read ever waits long, only the whole GET does.
    check = SmokeCheck(path="/queue", contains="serial_gate")
    with trickling_server(b'{"jobs": [', pause_s=0.05) as base:
        started = time.monotonic()
        answer = http_get(base + "/queue", check, timeout_s=0.5)
        elapsed = time.monotonic() - started
    assert answer.status is None  # a timeout: transient, retried by run_smoke
    assert "TimeoutError" in answer.error
    assert 0.5 <= elapsed < 1.5
    assert answer.scanned == 0


def test_a_trickling_answer_whose_marker_came_early_passes_at_once() -> None:
    check = SmokeCheck(path="/queue", contains="serial_gate")
    with trickling_server(b'{"serial_gate": {}', pause_s=0.05) as base:
        answer = http_get(base + "/queue", check, timeout_s=5.0)
    assert (answer.status, answer.found) == (200, True)


def test_a_redirect_is_followed_to_the_answer() -> None:
    routes = healthy_routes() | {"/health": (302, "/healthz"), "/healthz": (200, "ok")}
    with http_server(routes) as (base, rec):
        result = run_smoke(base, DEFAULT_SMOKE_CHECKS, sleep=no_sleep)
    assert result.state == "ok", result.detail
    assert rec.gets[:2] == ["/health", "/healthz"]


def test_a_redirect_loop_is_not_followed_forever() -> None:
    routes = healthy_routes() | {"/health": (302, "/health")}
    with http_server(routes) as (base, rec):
        answer = http_get(base + "/health", SmokeCheck(path="/health"))
    assert answer.status is None and "redirects" in answer.error
    assert len(rec.gets) == 6
