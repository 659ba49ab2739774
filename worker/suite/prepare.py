"""Getting a checkout ready for its suite, as its contract asks: setup steps in the
worktree, or a cached venv built by them; then the job's own steps (`job_setup`)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from worker.containment.sandbox import Sandbox
from worker.contracts import TestContract
from worker.insuite import LAYER_VAR
from worker.suite.setup import SetupFailure, run_setup
from worker.suite.venvs import ensure_venv, in_venv


def prepare_suite(
    worktree: Path,
    sandbox: Sandbox,
    contract: TestContract,
    *,
    python: str,
    venvs_root: Path,
    tail_bytes: int = 4096,
) -> tuple[Sandbox, str] | SetupFailure:
    """The sandbox and interpreter the suite runs with, or the step that failed."""
    steps = contract.setup
    if contract.venv:
        venv = ensure_venv(
            contract.repo.lower(),
            worktree,
            sandbox,
            root=venvs_root,
            base_python=python,
            setup=contract.setup,
            key_files=contract.venv_key_files,
            timeout_s=contract.setup_timeout_s,
        )
        if isinstance(venv, SetupFailure):
            return venv
        # The venv's build ran `setup`; what is left is the job's own.
        sandbox, python, steps = (
            with_job_layer(in_venv(sandbox, venv), worktree),
            str(venv / "bin/python"),
            (),
        )
    failure = run_setup(
        worktree,
        sandbox,
        [*steps, *contract.job_setup],
        python=python,
        timeout_s=contract.setup_timeout_s,
        tail_bytes=tail_bytes,
    )
    return failure if failure is not None else (sandbox, python)


def with_job_layer(sandbox: Sandbox, worktree: Path) -> Sandbox:
    """The sandbox with pip installing into a prefix in the job's HOME (the cached venv
    is read-only to every job, and HOME goes with the job), which the gate's start-up
    of the suite adds as a site dir (worker/insuite/boot.py, zygote.py): an editable
    install's `.pth` works there, as it would in the venv. One per worktree: the
    integrity guard's and classification's checkouts of a job install their own."""
    name = hashlib.sha256(str(worktree).encode()).hexdigest()[:16]
    layer = str(sandbox.home_dir / ".job-layers" / name)
    return replace(sandbox, extra_env={**sandbox.extra_env, "PIP_PREFIX": layer, LAYER_VAR: layer})
