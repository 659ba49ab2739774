"""Running a project's suite under bubblewrap, cold or forked from the contained warm
interpreter, the way a job does: the project copied into the pool process's slot, the
suite's own directories there, the slot emptied afterwards."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.tools import required_tool
from worker.containment.bwrap import SuiteView, bwrap_missing, interpreter_paths
from worker.containment.sandbox import Sandbox
from worker.containment.slot import Slot, pool_slot
from worker.containment.view import contained_warm
from worker.containment.warm import WarmPytest, stop_warm_pytest
from worker.insuite import HERE as INSUITE_DIR
from worker.settings import Settings
from worker.suite.progress import Progress
from worker.suite.run import SuiteRun, run_suite

MODES = ("cold", "warm")
_workdir: dict[str, Path] = {}


def workdir() -> Path:
    """One workdir for the whole test process: its contained warm interpreters are
    reused from test to test, as from job to job."""
    if "path" not in _workdir:
        _workdir["path"] = path = Path(tempfile.mkdtemp(prefix="testgate-contained-"))
        # At exit: the warm interpreters (and their cgroups) first, then the workdir.
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        atexit.register(stop_warm_pytest)
    return _workdir["path"]


def mirrors() -> Path:
    """Where a test puts a git directory its suite may read (as the workdir's mirrors)."""
    path = workdir() / "mirrors"
    path.mkdir(parents=True, exist_ok=True)
    return path


def settings(**kw: Any) -> Settings:
    return Settings(workdir=str(workdir()), containment="required", **kw)


def warm_for(view: SuiteView, python: str, slot: Slot, **kw: Any) -> WarmPytest:
    """The contained warm interpreter of `view`. The pool may be full of other tests'
    views, each used lately, and a pool process then runs the job cold (that policy has
    tests of its own): a test that asks for a warm run stops them and gets one."""
    warm = contained_warm(settings(**kw), view, python, slot)
    if warm is None:
        stop_warm_pytest()
        warm = contained_warm(settings(**kw), view, python, slot)
    assert warm is not None
    return warm


def run_contained(
    root: Path,
    *,
    mode: str,
    readable: tuple[Path, ...] = (),
    python: str = sys.executable,
    timeout_s: float = 60,
    progress: Callable[[Progress], None] | None = None,
    adjust: Callable[[Sandbox], Sandbox] | None = None,
    after: Callable[[Slot], None] | None = None,
    settings_kw: dict[str, Any] | None = None,
    expect_warm: bool = True,
    **sandbox_kw: Any,
) -> SuiteRun:
    """Run `root`'s tests/ (copied into the slot) contained, `mode` "cold" or "warm".
    `after` looks at the slot before it is emptied. `expect_warm=False`: the warm
    interpreter may send this run cold (it ships a module named like one it preloaded)."""
    required_tool("bwrap", "bubblewrap")
    assert bwrap_missing() is None
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=workdir()))
    try:
        with pool_slot(workdir()) as slot:
            assert slot is not None
            shutil.copytree(root, slot.src, symlinks=True)
            view = SuiteView(
                writable=(), readable=(INSUITE_DIR, *interpreter_paths(python), *readable)
            )
            sandbox = Sandbox(
                scratch_dir=scratch,
                cookie=sandbox_kw.pop("cookie", uuid.uuid4().hex),
                kill_grace_s=0.5,
                view=view,
                suite_dir=slot.suite,
                **sandbox_kw,
            )
            if adjust is not None:
                sandbox = adjust(sandbox)
            if mode == "warm":
                assert sandbox.view is not None
                warm = warm_for(sandbox.view, python, slot, **(settings_kw or {}))
                sandbox = replace(sandbox, warm=warm)
            forks = sandbox.warm.forks if sandbox.warm else 0
            result = run_suite(
                slot.src,
                sandbox,
                python=python,
                target="tests/",
                timeout_s=timeout_s,
                progress=progress,
            )
            if sandbox.warm is not None and expect_warm:
                assert sandbox.warm.forks > forks, "the suite did not start warm"
            if after is not None:
                after(slot)
            return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def outcomes(root: Path, mode: str) -> dict[str, str]:
    """Each test's outcome in a contained run of `root`'s tests/, `mode` "cold" or "warm"."""
    result = run_contained(root, mode=mode)
    found = {outcome.test_id: outcome.outcome for outcome in result.outcomes}
    assert found, result.output_tail
    return found
