"""Celery configuration for testgate workers, derived from TESTGATE_* settings.

Jobs arrive on `tests`; advance and hand-back go to the orchestrator's queue. The
message is acknowledged only after the job ended (acks_late) and given back if the
process running it dies (reject_on_worker_lost), one message per process at a time.
"""

from __future__ import annotations

from kombu.entity import Queue

from worker.contracts import ContractsFileError, load_contracts
from worker.settings import load_settings

_settings = load_settings()
try:
    _longest_timeout_s = load_contracts(_settings).longest_timeout_s
except ContractsFileError:
    # Reported, with the reason, when the worker starts (worker.celery_app).
    _longest_timeout_s = _settings.timeout_s

broker_url = _settings.broker_url
result_backend = _settings.result_backend
broker_connection_retry_on_startup = True

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

task_default_queue = "tests"
task_queues = (Queue("tests"),)
task_routes = {
    "testgate.run_test_gate": {"queue": "tests"},
    _settings.advance_task: {"queue": _settings.orchestrator_queue},
    _settings.handback_task: {"queue": _settings.orchestrator_queue},
}

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# When the worker loses its broker connection mid-suite, the message is given back
# anyway (kombu's Redis channel restores its unacked messages when it closes; RabbitMQ
# requeues them) and will be delivered again. Cancelling would SIGTERM the pool process
# and throw the suite away; instead the running delivery keeps its renewed run lease
# and answers, and the second delivery waits for it and answers nothing (worker/lease.py;
# tests/chaos/test_delivery.py proves it on both brokers). Pinned because Celery 6 is
# to change the default to True.
worker_cancel_long_running_tasks_on_connection_loss = False

# Flower sees every worker and every tester job.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True
result_extended = True
result_expires = 7 * 24 * 3600

# Redis redelivers a message not acked within the visibility timeout to another
# worker; it must outlast the longest suite plus kill grace and overhead, or a job
# still running would be run twice (checked again at worker start).
broker_transport_options = {
    "visibility_timeout": _settings.visibility_timeout_s
    or _settings.required_visibility_timeout_s(_longest_timeout_s),
    # kombu sweeps for messages of dead workers every interval x throttle seconds (100 s
    # by default); one cheap ZRANGE every 10 s brings a lost job back sooner.
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
}
