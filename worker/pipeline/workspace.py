"""Where a job's suite runs: its checkout (in the pool process's slot when its suites
may fork from a contained warm interpreter) and its sandbox with the contract's setup
steps run in it. Every process of the job is gone when the sandbox's block ends."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from worker.containment import proctree, subreaper
from worker.containment.cgroup import open_job_cgroup
from worker.containment.sandbox import Limits, Sandbox, warm_interpreter
from worker.containment.slot import pool_slot
from worker.containment.view import contained, contained_warm, suite_python, suite_view
from worker.containment.warm import WarmPytest, warm_process_pids
from worker.git.checkout import Checkout, checkout, mirror_path
from worker.pipeline.audit import PytestEnv
from worker.pipeline.job_run import JobRun
from worker.settings import Settings
from worker.suite.prepare import prepare_suite
from worker.suite.setup import SetupFailure

logger = logging.getLogger("testgate.runner")


@contextmanager
def open_checkout(run: JobRun) -> Iterator[Checkout]:
    """The job's checkout, its making timed as the "checkout" phase; made in the pool
    process's slot when its suites may fork from a contained warm interpreter
    (worker/containment/slot.py), which is emptied after the worktree is gone."""
    settings = run.settings
    with ExitStack() as stack:
        with run.phases.phase("checkout"):
            slot = None
            if settings.warm_pytest and contained(settings):
                slot = stack.enter_context(pool_slot(settings.workdir_path))
            co = stack.enter_context(
                checkout(
                    run.job.repo,
                    run.job.branch,
                    run.job.commit,
                    workdir=settings.workdir_path,
                    url_template=settings.git_url_template,
                    git_timeout_s=settings.git_timeout_s,
                    job_dir=slot.path if slot else None,
                )
            )
        run.slot = slot
        try:
            yield co
        finally:
            run.slot = None


@contextmanager
def prepared(run: JobRun, co: Checkout) -> Iterator[tuple[Sandbox, str, PytestEnv] | SetupFailure]:
    """The job's sandbox with the setup steps run in it (or why they failed): the
    sandbox, the suite's interpreter and the branch's raw pytest environment. Every
    process of the job is gone when the block ends."""
    settings, contract = run.settings, run.contract
    scratch_root = settings.workdir_path / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="job-", dir=scratch_root))
    # Named by the cookie, so a redelivery finds (and empties) a dead delivery's group.
    cgroup = open_job_cgroup(f"job-{run.cookie[:16]}", settings.suite_max_pids)
    python = suite_python(settings, contract)
    mirror = mirror_path(settings.workdir_path, run.job.repo)
    view = suite_view(settings, contract, python, mirror)
    sandbox = Sandbox(
        scratch_dir=scratch,
        cookie=run.cookie,
        kill_grace_s=settings.kill_grace_s,
        tree_kill=settings.tree_kill,
        limits=Limits(
            max_memory_mb=settings.suite_max_memory_mb,
            max_file_mb=settings.suite_max_file_mb,
            max_processes=settings.suite_max_processes,
        ),
        extra_env=dict(contract.env),
        isolate_network=settings.suite_network_isolation,
        cgroup=cgroup,
        # Before the children snapshot below: it must not count as the job's leftover.
        # A contained suite's warm interpreter is chosen once its python is known.
        warm=_warm(settings, python) if view is None else None,
        view=view,
        suite_dir=run.slot.suite if run.slot and view else None,
    )
    # A subreaper pool process adopts what the job daemonises: without a cgroup that
    # is how it is found; with one, its killed members must still be reaped.
    before = subreaper.children() if subreaper.is_subreaper() else None
    try:
        # Only a delivery that ran before can have left processes (same cookie).
        if run.redelivered and (left := proctree.sweep(sandbox.cookie)):
            logger.warning(
                "killed %d process(es) of an earlier delivery of task %s", left, run.job.task_id
            )
        raw = PytestEnv(sandbox, python)
        with run.phases.phase("setup", steps=len(contract.setup)):
            prepared = prepare_suite(
                co.path,
                sandbox,
                contract,
                python=python,
                venvs_root=settings.workdir_path / "venvs",
                tail_bytes=settings.output_tail_bytes,
            )
        if isinstance(prepared, SetupFailure):
            yield prepared
        else:
            sandbox, python = prepared
            if sandbox.view is not None and run.slot is not None:
                warm = contained_warm(settings, sandbox.view, python, run.slot)
                sandbox = replace(sandbox, warm=warm)
            elif sandbox.view is None and sandbox.warm is not None:
                sandbox = replace(sandbox, warm=_warm(settings, python))
            yield sandbox, python, raw
    finally:
        if cgroup is not None:
            cgroup.remove()
        if before is not None:  # a warm interpreter started during the job is not its
            subreaper.reap_adopted(before | warm_process_pids())
        shutil.rmtree(scratch, ignore_errors=True)


def _warm(settings: Settings, python: str) -> WarmPytest | None:
    """The uncontained warm interpreter for `python` (None: warm starts are off)."""
    if not settings.warm_pytest:
        return None
    return warm_interpreter(python)
