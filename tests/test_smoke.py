from contextlib import ExitStack

from tests.httpfixtures import free_port, healthy_routes, http_server
from worker.contracts import DEFAULT_SMOKE_CHECKS
from worker.smoke import run_smoke


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
