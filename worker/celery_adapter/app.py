"""The Celery app: configuration from `celeryconfig`, start-up safety checks."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from kombu.utils.url import maybe_sanitize_url

from worker.celery_adapter.broker_options import (
    TESTS_QUEUE,
    delivery_budget_s,
    eta_task_limit,
    foreign_queues,
    is_amqp,
    is_redis,
    tests_queue_arguments,
)
from worker.containment.cgroup import open_job_cgroup
from worker.containment.sandbox import Sandbox
from worker.containment.subreaper import become_subreaper
from worker.containment.view import containment_missing, warm_up
from worker.containment.warm import stop_warm_pytest
from worker.contracts import load_contracts
from worker.errors import ContractsFileError, UnsafeConfiguration
from worker.git.checkout import forget_stored_urls, mirror_path
from worker.settings import load_settings

logger = logging.getLogger("testgate.app")

app = Celery("testgate")
app.config_from_object("celeryconfig")
# The tasks; telemetry holds signal handlers (traces, queue-wait stamps) and an inspect command.
for _module in ("tasks", "shard_tasks", "telemetry"):
    app.autodiscover_tasks(["worker.celery_adapter"], related_name=_module, force=True)


def check_configuration(conf: Any, concurrency: int = 1) -> None:
    """Refuse a configuration that cannot keep the contract's promises; raise with the fix."""
    settings = load_settings()
    try:
        contracts = load_contracts(settings)
    except ContractsFileError as exc:
        raise UnsafeConfiguration(f"refusing to start: {exc}") from exc
    broker = str(conf.broker_url or "")
    if is_redis(broker):
        visibility = int((conf.broker_transport_options or {}).get("visibility_timeout", 3600))
        required = delivery_budget_s(settings, contracts, concurrency)
        if visibility < required:
            raise UnsafeConfiguration(
                f"refusing to start: the Redis visibility_timeout is {visibility}s but one "
                f"delivery may hold a job for {required}s (suite + kill grace + setup + git "
                "+ mirror lock waits + a held countdown + overhead); a running job would be "
                "redelivered to a second worker. Raise TESTGATE_VISIBILITY_TIMEOUT_S to at "
                f"least {required} or leave it unset."
            )
    limited = (
        settings.suite_max_memory_mb,
        settings.suite_max_file_mb,
        settings.suite_max_processes,
    )
    if any(limited) and shutil.which("prlimit") is None:
        raise UnsafeConfiguration(
            "refusing to start: suite resource limits are set (TESTGATE_SUITE_MAX_*) but "
            "`prlimit` (util-linux) is not installed; install it or set the limits to 0"
        )
    if settings.suite_network_isolation and not network_isolation_works():
        raise UnsafeConfiguration(
            "refusing to start: TESTGATE_SUITE_NETWORK_ISOLATION is on but `unshare --net` "
            "does not work here (not installed, or no root / user namespaces); suites would "
            "otherwise fail for a reason that is not theirs"
        )
    if settings.containment == "required" and (missing := containment_missing(settings)):
        raise UnsafeConfiguration(
            f"refusing to start: TESTGATE_CONTAINMENT=required but {missing}; install "
            "bubblewrap (apt-get install bubblewrap) and allow user namespaces, or set "
            "TESTGATE_CONTAINMENT=auto to run suites uncontained (unsafe with agent code)"
        )
    if not conf.task_acks_late or not conf.task_reject_on_worker_lost:
        raise UnsafeConfiguration(
            "refusing to start: task_acks_late and task_reject_on_worker_lost must be on, "
            "or a job whose worker dies is lost"
        )


def fit_to_concurrency(conf: Any, concurrency: int) -> None:
    """What depends on how many jobs this worker runs at once, known only now: a derived
    visibility timeout and the queue's consumer timeout grow with the mirror lock waits
    of `concurrency` jobs, and at most one message per pool slot is held (ETA limit)."""
    settings = load_settings()
    try:
        contracts = load_contracts(settings)
    except ContractsFileError:
        return  # check_configuration refuses to start, with the reason
    budget = delivery_budget_s(settings, contracts, concurrency)
    broker = str(conf.broker_url or "")
    options = dict(conf.broker_transport_options or {})
    if is_redis(broker) and not settings.visibility_timeout_s:
        options["visibility_timeout"] = max(int(options.get("visibility_timeout", 0)), budget)
    conf.broker_transport_options = options
    queue = app.amqp.queues.get(TESTS_QUEUE)
    if queue is not None and is_amqp(broker):
        queue.queue_arguments = tests_queue_arguments(broker, budget)
    conf.worker_eta_task_limit = eta_task_limit(concurrency, conf.worker_prefetch_multiplier)
    logger.info(
        "delivery budget %ds for %d job(s) at once; at most %d message(s) held",
        budget,
        concurrency,
        conf.worker_eta_task_limit,
    )


def check_broker(conf: Any) -> None:
    """Refuse what only the broker itself shows: on Redis, a DB shared with other
    applications' queues; on RabbitMQ, a `tests` queue that cannot be declared as ours."""
    settings = load_settings()
    broker = str(conf.broker_url or "")
    if is_redis(broker):
        _check_dedicated_redis_db(broker, settings.orchestrator_queue)
    elif is_amqp(broker):
        queue = app.amqp.queues.get(TESTS_QUEUE)
        if queue is not None:
            with app.connection_for_read() as conn:
                check_tests_queue(conn, queue)


def _check_dedicated_redis_db(url: str, orchestrator_queue: str) -> None:
    try:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
        foreign = foreign_queues(client, {TESTS_QUEUE, orchestrator_queue})
    except redis.RedisError as exc:
        # The worker waits for its broker anyway (broker_connection_retry_on_startup);
        # a later start, with the broker up, checks again.
        logger.warning("could not check that the Redis broker DB is dedicated: %s", exc)
        return
    if foreign:
        raise UnsafeConfiguration(
            f"refusing to start: the Redis broker DB is shared with other queues "
            f"({', '.join(foreign[:10])}). kombu keeps one unacked index per DB and every "
            "consumer restores entries older than its own visibility timeout, so another "
            "application's worker would hand a running job to a second worker. Give "
            "testgate a DB of its own (TESTGATE_BROKER_URL=redis://host:port/<db>), shared "
            "only with the orchestrator's queue."
        )
    logger.info(
        "Redis broker DB is dedicated; the orchestrator's workers consuming %r from it "
        "must use a visibility_timeout of at least this worker's",
        orchestrator_queue,
    )


def check_tests_queue(conn: Any, queue: Any) -> None:
    """Declare `queue` as this worker will; RabbitMQ refuses a queue that exists with
    other arguments (PRECONDITION_FAILED), which would otherwise stop consuming."""
    try:
        with conn.channel() as channel:
            queue(channel).declare()
    except conn.channel_errors as exc:
        raise UnsafeConfiguration(
            f"refusing to start: RabbitMQ refuses to declare queue {queue.name!r} with "
            f"arguments {queue.queue_arguments} ({exc}). It exists with other ones: delete "
            f"it while it is empty (rabbitmqctl delete_queue {queue.name}) so the worker "
            "declares it anew, or set its consumer timeout by a policy (consumer-timeout) "
            "and TESTGATE's argument to match."
        ) from exc


def network_isolation_works() -> bool:
    """One probe at start-up: can this worker put a command in its own network namespace?"""
    probe = Sandbox(scratch_dir=Path("."), cookie="probe", isolate_network=True).wrap(
        ["true"], Path(".")
    )
    try:
        return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@worker_init.connect
def _check_before_consuming(sender: Any = None, **_: Any) -> None:
    """Stop the worker before it consumes anything if the configuration is unsafe.

    Celery logs and swallows exceptions raised by signal handlers, so refusing to
    start has to be a SystemExit, with the reason printed where the operator looks.
    """
    if sender is not None and sender.app is not app:
        return  # another app's worker in this process (the demo's orchestrator)
    conf = app.conf
    concurrency = _concurrency_of(sender)
    try:
        fit_to_concurrency(conf, concurrency)
        check_configuration(conf, concurrency)
        check_broker(conf)
    except UnsafeConfiguration as exc:
        logger.critical("%s", exc)
        print(f"testgate: {exc}", file=sys.stderr)
        raise SystemExit(78) from exc  # EX_CONFIG
    logger.info(
        "testgate worker configuration checked: broker %s", maybe_sanitize_url(str(conf.broker_url))
    )
    forget_stored_urls(load_settings().workdir_path)
    _log_process_containment()


def _concurrency_of(sender: Any) -> int:
    """Pool slots of the starting worker; "auto" (resolved later by Celery) and a
    missing sender count as the CPU count, Celery's own default."""
    value = getattr(sender, "concurrency", None)
    return value if isinstance(value, int) and value > 0 else (os.cpu_count() or 1)


def _log_process_containment() -> None:
    """Say once how far a job's processes are contained here (it depends on privileges)."""
    settings = load_settings()
    missing = containment_missing(settings)
    if settings.containment == "off":
        logger.warning("containment is OFF (TESTGATE_CONTAINMENT=off): suites see the worker")
    elif missing is not None:
        logger.warning("suites run UNCONTAINED: %s (TESTGATE_CONTAINMENT=auto)", missing)
    else:
        logger.info(
            "suites run contained by bubblewrap: own user, PID, mount, IPC and network "
            "namespaces, no capabilities, an allowlisted read-only view"
        )
    max_pids = settings.suite_max_pids
    probe = open_job_cgroup("startup-probe", max_pids)
    if probe is not None:
        probe.remove()
        logger.info("each job runs in a pids cgroup of its own (at most %d processes)", max_pids)
    else:
        logger.warning(
            "no writable pids cgroup (TESTGATE_SUITE_MAX_PIDS=%d): a job's processes are "
            "found by its cookie and process tree only, and a fork bomb is bounded only by "
            "TESTGATE_SUITE_MAX_PROCESSES (RLIMIT_NPROC, not for root)",
            max_pids,
        )


@worker_process_init.connect
def _adopt_orphans(**_: Any) -> None:
    """Each pool process becomes a child subreaper: what a job daemonises is re-parented
    to it (not to PID 1) and killed when the job ends, even without a cgroup."""
    become_subreaper()


@worker_process_init.connect
def _warm_up_pytest(**_: Any) -> None:
    """Each pool process starts the warm pytest interpreters its contracts' suites
    fork from (contained, when suites are) while it waits for its first job, so that
    even the first suite skips pytest's start-up."""
    settings = load_settings()
    try:
        contracts = list(load_contracts(settings).by_repo.values())
    except ContractsFileError:
        contracts = []  # check_configuration refused to start, with the reason
    # The contracts file's first: the built-in contract is the self-hosting repo's.
    own = settings.self_repo.lower()
    mirrors = functools.partial(mirror_path, settings.workdir_path)
    warm_up(settings, sorted(contracts, key=lambda c: c.repo.lower() == own), mirrors)


@worker_process_shutdown.connect
def _stop_warm_pytest(**_: Any) -> None:
    """A pool process that exits stops its warm interpreter itself rather than leave it
    to the kernel's parent-death signal."""
    stop_warm_pytest()
