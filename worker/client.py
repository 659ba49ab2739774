"""The orchestrator's side of the wire. Importing this opens no connection.

from worker import client
if client.should_intercept(job):      # in launch_job, before spawning the LLM tester
    client.enqueue(job)               # testgate.run_test_gate on queue `tests`
    return
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery

from worker import names
from worker.contracts import load_contracts
from worker.errors import ContractsFileError, InvalidJob, StateUnavailable
from worker.job import JobRejected, parse_job
from worker.scope import scope_rejection
from worker.settings import Settings, load_settings
from worker.state import COUNTERS, RedisState

__all__ = ["InvalidJob", "applies", "enqueue", "should_intercept", "snapshot"]

logger = logging.getLogger("testgate.client")


def applies(repo: Any, settings: Settings | None = None) -> bool:
    """docs/contract.md §2: kill-switch, CSV scope, and a resolvable contract. Never raises."""
    try:
        if not isinstance(repo, str):
            return False
        settings = settings or load_settings()
        try:
            contracts = load_contracts(settings)
        except ContractsFileError as exc:
            logger.warning("contracts unavailable, nothing is intercepted: %s", exc)
            return False
        return scope_rejection(repo, settings, contracts) is None
    except Exception as exc:  # noqa: BLE001 - docs/contract.md §2: never raises, errors -> False
        logger.warning("applies(%r) failed: %s", repo, exc)
        return False


def should_intercept(job: Any, settings: Settings | None = None) -> bool:
    """True iff testgate, not the LLM tester, runs this job. Never raises."""
    try:
        if not isinstance(job, dict) or job.get("agent") != "tester":
            return False
        return job.get("stage") == "testing" and applies(job.get("repo"), settings)
    except Exception as exc:  # noqa: BLE001 - docs/contract.md §2: never raises, errors -> False
        logger.warning("should_intercept failed: %s", exc)
        return False


def enqueue(
    job: dict[str, Any], app: Celery | None = None, settings: Settings | None = None
) -> str:
    """Validate `job` and send it by name to `tests`; return the Celery task id."""
    parsed = parse_job(job)
    if isinstance(parsed, JobRejected):
        raise InvalidJob(parsed.reason)
    settings = settings or load_settings()
    if app is None:
        app = Celery("testgate-client", broker=settings.broker_url, backend=settings.result_backend)
        app.conf.task_serializer = "json"
    kwargs = parsed.model_dump(exclude_none=True)
    # When it was sent, so the worker can tell how long it waited (its queue-wait phase).
    headers = {"testgate_sent_at": time.time()}
    result = app.send_task(
        names.RUN_TEST_GATE, kwargs=kwargs, queue=names.TESTS_QUEUE, headers=headers
    )
    return str(result.id)


def snapshot(settings: Settings | None = None) -> dict[str, Any]:
    """Settings and fleet-wide counters for the orchestrator's GET /queue. Never raises."""
    try:
        settings = settings or load_settings()
        gate = ("enabled", "repos", "self_repo", "target", "timeout_s", "smoke_enabled")
        retries = ("infra_max_retries", "infra_retry_delay_s")
        base = settings.model_dump(include={*gate, *retries})  # in the settings' own order
        try:
            counters = RedisState.from_url(settings.state_redis_url, settings.key_prefix).counters()
        except StateUnavailable as exc:
            logger.warning("snapshot without counters: %s", exc)
            counters = dict.fromkeys(COUNTERS, 0) | {"counters_unavailable": 1}
        return base | counters
    except Exception as exc:  # noqa: BLE001 - docs/contract.md §10: snapshot never raises
        logger.warning("snapshot failed: %s", exc)
        try:
            return {"enabled": bool(load_settings().enabled)}
        except Exception:  # noqa: BLE001
            return {"enabled": False}
