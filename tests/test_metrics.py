from worker.metrics import observe_suite_duration, render_metrics
from worker.state import MemoryState


def test_durations_land_in_cumulative_buckets_and_outcomes_are_counted() -> None:
    state = MemoryState()
    for seconds in (0.4, 7.0, 700.0):
        observe_suite_duration(state, seconds)
    state.bump("outcome_code-pass", 2)
    state.bump("outcome_tool-error")
    state.bump("handed_back")
    text = render_metrics(state.counters(), queue_depth=3, workers_online=2)
    lines = set(text.splitlines())
    assert 'testgate_suite_duration_seconds_bucket{le="1"} 1' in lines
    assert 'testgate_suite_duration_seconds_bucket{le="10"} 2' in lines
    assert 'testgate_suite_duration_seconds_bucket{le="600"} 2' in lines
    assert 'testgate_suite_duration_seconds_bucket{le="900"} 3' in lines
    assert 'testgate_suite_duration_seconds_bucket{le="+Inf"} 3' in lines
    assert "testgate_suite_duration_seconds_count 3" in lines
    assert "testgate_suite_duration_seconds_sum 707.4" in lines
    assert 'testgate_jobs_total{outcome="code-pass"} 2' in lines
    assert 'testgate_jobs_total{outcome="tool-error"} 1' in lines
    assert 'testgate_jobs_total{outcome="handed-back"} 1' in lines
    assert "testgate_queue_depth 3" in lines and "testgate_workers_online 2" in lines


def test_unknown_gauges_are_left_out_rather_than_reported_as_zero() -> None:
    text = render_metrics({}, queue_depth=None, workers_online=None)
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any(
        line.startswith(("testgate_queue_depth", "testgate_workers_online")) for line in samples
    )
    assert 'testgate_jobs_total{outcome="code-fail"} 0' in samples
