"""Celery configuration for testgate workers, derived from TESTGATE_* settings.

Jobs arrive on `tests`; advance and hand-back go to the orchestrator's queue. The
message is acknowledged only after the job ended (acks_late) and given back if the
process running it dies (reject_on_worker_lost), one message per process at a time.
"""

from __future__ import annotations

from worker import names
from worker.celery_adapter.broker_options import delivery_budget_s, tests_queue, transport_options
from worker.contracts import Contracts, load_contracts
from worker.errors import ContractsFileError
from worker.settings import load_settings

_settings = load_settings()
_contracts: Contracts | None
try:
    _contracts = load_contracts(_settings)
except ContractsFileError:
    # Reported, with the reason, when the worker starts (worker.celery_adapter.app).
    _contracts = None
# For one job per host; a worker knows its real concurrency only when it starts, and
# raises the visibility timeout then (worker.celery_adapter.app) if its jobs wait for each other.
_budget_s = delivery_budget_s(_settings, _contracts, concurrency=1)

broker_url = _settings.broker_url
result_backend = _settings.result_backend
broker_connection_retry_on_startup = True

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

task_default_queue = names.TESTS_QUEUE
task_queues = (tests_queue(_settings.broker_url, _budget_s),)
task_routes = {
    names.RUN_TEST_GATE: {"queue": names.TESTS_QUEUE},
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
# and answers, and the second delivery waits for it and answers nothing (worker/pipeline/lease.py;
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
# worker; it must outlast everything one delivery may take (the suite, its setup, git,
# mirror lock waits, a held countdown), or a job still running would be run twice
# (checked again at worker start). On RabbitMQ, publishes wait for the broker's confirm.
broker_transport_options = transport_options(
    _settings.broker_url, _settings.visibility_timeout_s or _budget_s
)
