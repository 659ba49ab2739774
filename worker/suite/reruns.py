"""The pytest runs after the suite: collect-only (integrity guard) and re-runs of just
the failing ids (classification). Each runs through the job's sandbox, bounded in time,
and reads its results from the in-suite probe; none raises."""

from __future__ import annotations

import logging
from collections.abc import Collection as Ids
from dataclasses import dataclass
from pathlib import Path

from worker.containment.sandbox import Bounded, Sandbox, run_bounded
from worker.suite.probe import ProbeFiles, read_collected, read_outcomes, with_probe
from worker.suite.run import suite_command

logger = logging.getLogger("testgate.reruns")

# Exit codes after which every selected test that did not run is known not to exist.
_COMPLETE_EXITS = (0, 1, 5)


@dataclass(frozen=True)
class Collection:
    ids: frozenset[str]
    complete: bool  # collection finished without errors
    detail: str  # how it ended, in words


def collect_ids(
    worktree: Path, sandbox: Sandbox, *, python: str, target: str, timeout_s: float, label: str
) -> Collection:
    """`python -m pytest <target> --collect-only -q` and the ids it collected."""
    if timeout_s <= 0:
        return Collection(frozenset(), False, "no time left in the job's budget")
    # No assertion rewriting: nothing runs, and rewriting every test module (no .pyc
    # can be kept) is a fifth of a collection's time.
    command = suite_command(python, [target], options=("--collect-only", "--assert=plain"))
    with ProbeFiles(sandbox.out_dir, f"collect-{label}") as files:
        ended = _run(command, worktree, with_probe(sandbox, files, collect=True), files, timeout_s)
        ids = read_collected(files)
    detail = _ended(ended, timeout_s)
    if ids is None:
        return Collection(frozenset(), False, f"{detail}, no test ids recorded")
    return Collection(ids, ended.exit_code in (0, 5), detail)


def rerun_ids(
    worktree: Path,
    sandbox: Sandbox,
    *,
    python: str,
    target: str,
    ids: Ids[str],
    timeout_s: float,
    label: str,
) -> dict[str, str] | None:
    """Run only `ids` (selected by the probe, so an id that does not exist here is
    simply not run) and map each to its outcome; "missing" when the run completed
    without it. None when nothing could be run."""
    if timeout_s <= 0 or not ids:
        return None
    command = suite_command(python, [target])
    with ProbeFiles(sandbox.out_dir, f"rerun-{label}") as files:
        ended = _run(command, worktree, with_probe(sandbox, files, select=ids), files, timeout_s)
        outcomes = {o.test_id: o.outcome for o in read_outcomes(files) if o.test_id in ids}
    if ended.exit_code not in _COMPLETE_EXITS:
        logger.warning("re-run on %s %s", label, _ended(ended, timeout_s))
        return outcomes or None
    return {test_id: outcomes.get(test_id, "missing") for test_id in ids}


def _run(
    command: tuple[str, ...], worktree: Path, sandbox: Sandbox, files: ProbeFiles, timeout_s: float
) -> Bounded:
    # Uncontained, the worker's, outside the suite's reach (it is opened for appending).
    # Contained, in the run's fresh directory, where a contained warm fork can open it
    # (it is never read).
    if sandbox.view is not None:
        log_path = files.path("output.log")
    else:
        log_path = sandbox.scratch_dir / f"{files.directory.name}.log"
    return run_bounded(command, worktree, sandbox, log_path=log_path, timeout_s=timeout_s)


def _ended(ended: Bounded, timeout_s: float) -> str:
    if ended.spawn_error:
        return f"could not be started: {ended.spawn_error}"
    if ended.timed_out:
        return f"timed out after {timeout_s:.0f}s"
    return f"exit code {ended.exit_code}"
