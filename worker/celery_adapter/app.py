"""The Celery app: configuration from `celeryconfig`, start-up safety checks."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from kombu.utils.url import maybe_sanitize_url

from worker.containment.cgroup import open_job_cgroup
from worker.containment.sandbox import Sandbox, warm_interpreter
from worker.containment.subreaper import become_subreaper
from worker.containment.warm import stop_warm_pytest
from worker.contracts import load_contracts
from worker.errors import ContractsFileError, UnsafeConfiguration
from worker.settings import load_settings

logger = logging.getLogger("testgate.app")

app = Celery("testgate")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["worker.celery_adapter"], related_name="tasks", force=True)
app.autodiscover_tasks(["worker.celery_adapter"], related_name="shard_tasks", force=True)


def check_configuration(conf: Any) -> None:
    """Refuse a configuration that cannot keep the contract's promises; raise with the fix."""
    settings = load_settings()
    try:
        longest = load_contracts(settings).longest_timeout_s
    except ContractsFileError as exc:
        raise UnsafeConfiguration(f"refusing to start: {exc}") from exc
    broker = str(conf.broker_url or "")
    if broker.startswith(("redis://", "rediss://", "unix://")):
        visibility = int((conf.broker_transport_options or {}).get("visibility_timeout", 3600))
        required = settings.required_visibility_timeout_s(longest)
        if visibility < required:
            raise UnsafeConfiguration(
                f"refusing to start: the Redis visibility_timeout is {visibility}s but the "
                f"longest suite may hold a job for {required}s (timeout + kill grace + "
                "overhead); a running job would be redelivered to a second worker. Raise "
                f"TESTGATE_VISIBILITY_TIMEOUT_S to at least {required} or leave it unset."
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
    if not conf.task_acks_late or not conf.task_reject_on_worker_lost:
        raise UnsafeConfiguration(
            "refusing to start: task_acks_late and task_reject_on_worker_lost must be on, "
            "or a job whose worker dies is lost"
        )


def network_isolation_works() -> bool:
    """One probe at start-up: can this worker put a command in its own network namespace?"""
    probe = Sandbox(scratch_dir=Path("."), cookie="probe", isolate_network=True).wrap(["true"])
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
    try:
        check_configuration(conf)
    except UnsafeConfiguration as exc:
        logger.critical("%s", exc)
        print(f"testgate: {exc}", file=sys.stderr)
        raise SystemExit(78) from exc  # EX_CONFIG
    logger.info(
        "testgate worker configuration checked: broker %s", maybe_sanitize_url(str(conf.broker_url))
    )
    _log_process_containment()


def _log_process_containment() -> None:
    """Say once how far a job's processes are contained here (it depends on privileges)."""
    max_pids = load_settings().suite_max_pids
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
    """Each pool process starts its warm pytest interpreter while it waits for its first
    job, so that even the first suite skips pytest's start-up."""
    if load_settings().warm_pytest:
        warm_interpreter()


@worker_process_shutdown.connect
def _stop_warm_pytest(**_: Any) -> None:
    """A pool process that exits stops its warm interpreter itself rather than leave it
    to the kernel's parent-death signal."""
    stop_warm_pytest()
