"""Run the regression suite, `python -m pytest <target> -q`, in a job's worktree.

The process handling (timeout, whole-job kill, environment, limits) is the sandbox's;
this module knows pytest: its command line and what the in-suite probe recorded of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from worker.containment.sandbox import Sandbox, read_tail, run_bounded
from worker.containment.witness import StartWitness
from worker.evidence import SessionRecord, objection, parse_session_records
from worker.suite.probe import (
    OUTPUT_LOG,
    PROBE_MODULE,
    PROGRESS,
    Hang,
    ProbeFiles,
    TestOutcome,
    hang_dump_margin_s,
    read_hang,
    read_outcomes,
    read_session,
    with_probe,
)
from worker.suite.progress import PROGRESS_FILE_VAR, Progress, ProgressWatcher
from worker.suite.tally import NO_TALLY, Tally, tally

logger = logging.getLogger("testgate.suite")

MAX_PROGRESS_BYTES = 4096


@dataclass(frozen=True)
class SuiteRun:
    """What happened when the suite was started. Never raised, always returned."""

    command: tuple[str, ...]
    exit_code: int | None  # None: no exit code was produced (spawn error, timeout)
    timed_out: bool
    spawn_error: str | None
    duration_s: float
    output_tail: str  # at most `tail_bytes` of the end of stdout+stderr
    output_bytes: int  # how much the suite printed in total
    tally: Tally = NO_TALLY  # what the probe counted (tests None: no session record)
    leftover_killed: int = 0  # processes of the job still alive after it ended, killed
    outcomes: tuple[TestOutcome, ...] = ()  # per test, as the in-suite probe saw them
    hang: Hang | None = None  # where it hung, when it was killed at the timeout
    limit_notes: tuple[str, ...] = ()  # resource limits the suite ran into
    started: bool | None = None  # its interpreter said it came up (None: not asked)
    session: tuple[SessionRecord, ...] = ()  # the probe's records carrying the run's nonce

    @property
    def ran(self) -> bool:
        """True iff the suite really executed (docs/contract.md §7): it produced an exit code, or
        it said it started and then ended some other way (its parent killed)."""
        if self.spawn_error is not None or self.timed_out:
            return False
        return self.exit_code is not None or self.started is True

    def evidence_objection(self, *, require_a_pass: bool = True) -> str | None:
        """Why the gate's own records do not support a PASS; None when they do."""
        return objection(self.session, self.output_tail, require_a_pass=require_a_pass)


def suite_command(
    python: str, targets: Sequence[str], maxfail: int = 0, options: Sequence[str] = ()
) -> tuple[str, ...]:
    """The suite's argv: pytest with the gate's probe and nothing else of the gate's.
    The probe arms the hang watchdog itself, once, a few seconds before the hard kill
    (pytest's own faulthandler_timeout re-arms it around every test, a cost on suites
    of many fast tests), and writes progress itself, in its batches. With `maxfail`,
    pytest stops after that many failing tests (a contract's stop_after_failures)."""
    stop = (f"--maxfail={maxfail}",) if maxfail > 0 else ()
    return (
        python,
        "-m",
        "pytest",
        *targets,
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        PROBE_MODULE,
        *stop,
        *options,
    )


def run_suite(
    worktree: Path,
    sandbox: Sandbox,
    *,
    python: str,
    target: str,
    timeout_s: float,
    tail_bytes: int = 4096,
    progress: Callable[[Progress], None] | None = None,
    select: Collection[str] | None = None,
    first: Sequence[str] = (),
    maxfail: int = 0,
    options: Sequence[str] = (),
) -> SuiteRun:
    """Run the suite in `worktree` inside `sandbox`; never raises. With `select`, only
    those test ids of `target` run (a shard); `first` run before the others;
    `maxfail` > 0 stops the run after that many failing tests; `options` are more of
    pytest's (the trusted configuration's)."""
    with ProbeFiles(sandbox.out_dir, "run") as probe:
        return _run_probed(
            worktree,
            sandbox,
            probe,
            python,
            target,
            timeout_s,
            tail_bytes,
            progress,
            select,
            _Order(tuple(first), maxfail, tuple(options)),
        )


@dataclass(frozen=True)
class _Order:
    first: tuple[str, ...] = ()
    maxfail: int = 0
    options: tuple[str, ...] = ()


def _run_probed(
    worktree: Path,
    sandbox: Sandbox,
    probe: ProbeFiles,
    python: str,
    target: str,
    timeout_s: float,
    tail_bytes: int,
    progress: Callable[[Progress], None] | None,
    select: Collection[str] | None,
    order: _Order,
) -> SuiteRun:
    # Uncontained, the worker's: out of the suite's reach. Contained, where a warm start's
    # fork can open it (it opens its log itself, inside the sandbox): in the run's fresh
    # directory, read back like every file there.
    in_reach = sandbox.view is not None
    log_path = probe.path(OUTPUT_LOG) if in_reach else sandbox.scratch_dir / "output.log"
    watcher = None
    if progress is not None:
        watcher = ProgressWatcher(
            lambda: probe.reader.read_text(PROGRESS, MAX_PROGRESS_BYTES), progress
        )
    witness = StartWitness()
    command = suite_command(python, [target], order.maxfail, order.options)
    dump_at = time.time() + timeout_s - hang_dump_margin_s(timeout_s)
    progressing = replace(
        sandbox, extra_env={**sandbox.extra_env, PROGRESS_FILE_VAR: str(probe.path(PROGRESS))}
    )
    ended = run_bounded(
        command,
        worktree,
        with_probe(progressing, probe, dump_at=dump_at, select=select, first=order.first),
        log_path=log_path,
        timeout_s=timeout_s,
        on_tick=watcher,
        witness=witness,
    )
    witness.close()
    if watcher is not None:
        watcher()  # the last word, which a tick may have missed
    tail, size = probe.output_tail(tail_bytes) if in_reach else read_tail(log_path, tail_bytes)
    outcomes = read_outcomes(probe)
    session = parse_session_records(read_session(probe), witness.nonce)
    return SuiteRun(
        command=command,
        exit_code=ended.exit_code,
        timed_out=ended.timed_out,
        spawn_error=ended.spawn_error,
        duration_s=ended.duration_s,
        output_tail=tail,
        output_bytes=size,
        tally=tally(session, outcomes),
        leftover_killed=ended.leftover_killed,
        limit_notes=ended.limit_notes,
        outcomes=outcomes,
        hang=read_hang(probe) if ended.timed_out else None,
        started=ended.started,
        session=session,
    )
