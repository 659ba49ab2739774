"""Getting a checkout ready for its suite, as its contract asks: setup steps in the
worktree, or a cached venv built by them."""

from __future__ import annotations

from pathlib import Path

from worker.containment.sandbox import Sandbox
from worker.contracts import TestContract
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
    if not contract.venv:
        failure = run_setup(
            worktree,
            sandbox,
            contract.setup,
            python=python,
            timeout_s=contract.setup_timeout_s,
            tail_bytes=tail_bytes,
        )
        return failure if failure is not None else (sandbox, python)
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
    return in_venv(sandbox, venv), str(venv / "bin" / "python")
