"""Sending hostile branches to a contained fleet and judging what came back.

Every attack is a branch of one origin repository, so an attack on the mirror, the
interpreter or the worker shows on the jobs after it. A class of attacks is sent at
once; the single-process worker takes them in order, then the honest jobs that close
every class (a failing branch that must FAIL and a passing one that must PASS). What
each job left is checked from outside: the advance on the orchestrator's queue, the
report commit on the bare origin (read with git), the origin's `main`, the alerts, the
processes still alive, and files a filter or hook would have written had it run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.result import AsyncResult

from testkit.fleet import ADVANCE, HANDBACK, Orchestrator, WorkerProcess, pid_alive
from testkit.repofactory import git
from tests.httpfixtures import Recorder
from tests.projects import outer_site_step
from worker.report.orchestrator_gate import parse_tests_verdict

REPO = "hostile"
SLOW_REPO = "hostile-slow"  # a short timeout, for attacks that need the run to time out
OTHER_REPO = "hostile-other"  # another repository on the same worker: no pytest config
VENV_REPO = "hostile-venv"  # its suites run in a cached venv its setup builds
VENV_SETUP = (outer_site_step(), "python -m pip --version")
TRUSTED_REPO = "hostile-trusted"  # trusted and hidden tests (tests/hostile/gaming.py's main)
HIDDEN_REPO = "hostile-hidden"  # the hidden tests of TRUSTED_REPO
# A cached venv too, and each job installs its own branch into a layer of its own.
LAYER_REPO = "hostile-layer"
LAYER_JOB_SETUP = ("python -m pip install -q --no-index .",)  # the plugin in the layer
BRANCH = "feature/x"  # unused by the attacks (each has its own branch); for symmetry
TIMEOUT_S = 20
SLOW_TIMEOUT_S = 4
JOB_BUDGET_S = 45.0  # from the previous job's advance to this one's, at most
BLOCKED_S = 2.0  # a worker in open() of a FIFO this long is stuck
GRACE_S = 20.0  # after the budget, while FIFOs are opened from outside
UNBLOCKABLE_S = 10.0  # and this long, despite every FIFO opened from outside: hopeless
SECRET_PREFIX = "HOSTILESECRET"

_task_ids = itertools.count(2000)


@dataclass(frozen=True)
class Secrets:
    """Unique random values planted around the worker; the tests grep for them."""

    values: Mapping[str, str]

    @classmethod
    def make(cls, *names: str) -> Secrets:
        return cls({name: f"{SECRET_PREFIX}{secrets.token_hex(16)}" for name in names})

    def found_in(self, text: str) -> list[str]:
        return sorted(name for name, value in self.values.items() if value in text)


@dataclass(frozen=True)
class Link:
    """A symbolic link in a branch's tree."""

    target: str


Files = Mapping[str, "str | Link"]


@dataclass(frozen=True)
class Origin:
    """The bare origin; branches are added from its work clone (see make_origin)."""

    bare: Path
    main_tip: str

    @property
    def work(self) -> Path:
        return self.bare.parent / f"{self.bare.stem}-work"

    def add_branch(self, name: str, files: Files) -> str:
        """A branch off `main` holding `files`; returns its tip."""
        work = self.work
        git(work, "checkout", "-q", "-f", "-B", name, "main")
        git(work, "clean", "-qfdx")
        for rel, content in files.items():
            path = work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Link):
                path.symlink_to(content.target)
            else:
                path.write_text(content)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"attack {name}")
        git(work, "push", "-q", str(self.bare), f"HEAD:refs/heads/{name}")
        return git(work, "rev-parse", "HEAD")

    def tip(self, branch: str) -> str:
        return git(self.bare, "rev-parse", f"refs/heads/{branch}")


@dataclass
class Fleet:
    broker_name: str
    orchestrator: Orchestrator
    origin: Origin
    slow_origin: Origin
    others: Mapping[str, Origin]  # OTHER_REPO's, VENV_REPO's and LAYER_REPO's
    workdir: Path
    marks: Path
    alerts: Recorder
    worker: WorkerProcess
    secrets: Secrets
    broker_password_in_url: bool
    trusted_origin: Origin | None = None


@dataclass(frozen=True)
class Ctx:
    """What a branch's files may name: its own work item, branch and markers."""

    task_id: int
    work_item: str
    branch: str
    marks: Path  # outside the sandbox: written only if something ran as the worker
    tag: str  # digits, unique per job: the argv marker of processes it leaves behind

    @property
    def report_path(self) -> str:
        return f"docs/work-items/{self.work_item}/13-test-report.md"

    @property
    def sleeper(self) -> str:
        """`sleep`'s argument for a process that must not outlive the job."""
        return f"3600.{self.tag}"


@dataclass(frozen=True)
class Case:
    name: str
    files: Callable[[Ctx], Files]
    result: str  # the verdict the report and the advance must carry
    outcome: str
    repo: str = REPO
    leaves_processes: bool = False  # check that none of its `sleeper`s survive
    # Another (result, outcome) that is just as right for this case: the report and the
    # advance must then agree on it.
    or_else: tuple[str, str] | None = None
    job: tuple[tuple[str, Any], ...] = ()  # more of the job's kwargs (required_tests)


@dataclass
class Ran:
    case: Case
    ctx: Ctx
    tip: str
    sent: AsyncResult
    advance: dict[str, Any] | None = None
    seconds: float = 0.0
    blocked: bool = False  # its advance came only after FIFOs were opened from outside


def honest_cases() -> list[Case]:
    """The jobs that close every class: the worker must still judge honest code."""
    from tests.hostile import suites

    return [
        Case("honest-fail", lambda _: suites.HONEST_FAIL, "FAIL", "code-fail"),
        Case("honest-pass", lambda _: suites.HONEST_PASS, "PASS", "code-pass"),
    ]


def contracts_toml() -> str:
    return (
        f'[repos.{REPO}]\ntarget = "tests/"\ntimeout_s = {TIMEOUT_S}\nsmoke_enabled = false\n\n'
        f'[repos."{SLOW_REPO}"]\ntarget = "tests/"\ntimeout_s = {SLOW_TIMEOUT_S}\n'
        "smoke_enabled = false\n\n"
        f'[repos."{OTHER_REPO}"]\ntarget = "tests/"\ntimeout_s = {TIMEOUT_S}\n'
        "smoke_enabled = false\n\n"
        f'[repos."{VENV_REPO}"]\ntarget = "tests/"\ntimeout_s = {TIMEOUT_S}\n'
        "smoke_enabled = false\n"
        f"venv = true\nsetup = {json.dumps(VENV_SETUP)}\n\n"
        f'[repos."{TRUSTED_REPO}"]\ntarget = "tests/"\ntimeout_s = {TIMEOUT_S}\n'
        "smoke_enabled = false\ntrusted_tests = true\n"
        f'hidden_tests = {{repo = "{HIDDEN_REPO}"}}\n\n'
        f'[repos."{LAYER_REPO}"]\ntarget = "tests/"\ntimeout_s = {TIMEOUT_S}\n'
        "smoke_enabled = false\n"
        f"venv = true\nsetup = {json.dumps(VENV_SETUP)}\n"
        f"job_setup = {json.dumps(LAYER_JOB_SETUP)}\n"
    )


def origin_of(fleet: Fleet, repo: str) -> Origin:
    if repo == REPO:
        return fleet.origin
    if repo == TRUSTED_REPO and fleet.trusted_origin is not None:
        return fleet.trusted_origin
    return fleet.slow_origin if repo == SLOW_REPO else fleet.others[repo]


def run_cases(fleet: Fleet, cases: Sequence[Case]) -> list[Ran]:
    """Push every case's branch, send every job at once, wait for each advance in turn."""
    runs: list[Ran] = []
    for case in cases:
        task_id = next(_task_ids)
        ctx = Ctx(
            task_id=task_id,
            work_item=f"WI-{task_id}",
            branch=f"{case.name}-{task_id}",
            marks=fleet.marks / f"{case.name}-{task_id}",
            tag=f"{task_id}{secrets.randbelow(10**6):06d}",
        )
        tip = origin_of(fleet, case.repo).add_branch(ctx.branch, case.files(ctx))
        runs.append(Ran(case, ctx, tip, sent=None))
    orch = fleet.orchestrator
    for run in runs:
        run.sent = orch.send(
            task_id=run.ctx.task_id,
            repo=run.case.repo,
            work_item_id=run.ctx.work_item,
            branch=run.ctx.branch,
            agent="tester",
            stage="testing",
            **dict(run.case.job),
        )
    for run in runs:
        _wait_advance(fleet, run)
    orch.drain()
    return runs


def _wait_advance(fleet: Fleet, run: Ran) -> None:
    """Poll for the advance. A worker that sits in open() of a FIFO for more than
    BLOCKED_S is stuck: it is freed from outside (so the session goes on) and the job is
    marked as having blocked it; so is a job whose advance is later than JOB_BUDGET_S."""
    started = time.monotonic()
    deadline = started + JOB_BUDGET_S
    give_up = deadline + GRACE_S
    stuck_since: float | None = None
    while True:
        found = fleet.orchestrator.events_for(run.ctx.task_id, ADVANCE)
        if found:
            run.advance = found[0]
            break
        now = time.monotonic()
        if now > give_up:
            break
        stuck = stuck_in_fifo_open(fleet.worker.process.pid)
        stuck_since = (stuck_since or now) if stuck else None
        if now > deadline or (stuck_since is not None and now - stuck_since > BLOCKED_S):
            run.blocked = True
            unblock_fifos(fleet.workdir)
        if stuck_since is not None and now - stuck_since > UNBLOCKABLE_S:
            # Waiting on a FIFO the suite unlinked: nothing can open it any more. Only
            # killing the stuck pool process (Celery starts another) frees the worker.
            for pid in stuck:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            stuck_since = None
        time.sleep(0.1)
    run.seconds = time.monotonic() - started


def stuck_in_fifo_open(worker_pid: int) -> list[int]:
    """The worker's processes (its process group: the pool process and the git it runs;
    never a suite, which has a session of its own) that wait in the open() of a FIFO
    for the other side to show up."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == worker_pid:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != worker_pid:
                continue
            if (entry / "wchan").read_text().strip() == "wait_for_partner":
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def unblock_fifos(root: Path) -> None:
    """Open every FIFO under `root` once for writing and once for reading, without
    blocking: whoever waits in an open() of one of them gets it, then end of file."""
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            try:
                if not stat.S_ISFIFO(os.lstat(path).st_mode):
                    continue
            except OSError:
                continue
            for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
                with contextlib.suppress(OSError):
                    os.close(os.open(path, flags))


def problems_of(fleet: Fleet, runs: Sequence[Ran]) -> list[str]:
    """Everything wrong with what the jobs left, one line each; [] when all is right."""
    found: list[str] = []
    for run in runs:
        found += [f"{run.case.name} ({run.ctx.branch}): {p}" for p in _problems(fleet, run)]
    if (main := fleet.origin.tip("main")) != fleet.origin.main_tip:
        found.append(f"main on the origin moved from {fleet.origin.main_tip} to {main}")
    if fleet.worker.process.poll() is not None:
        found.append(f"the worker exited {fleet.worker.process.returncode}")
    return found


def _problems(fleet: Fleet, run: Ran) -> list[str]:
    case, ctx, advance = run.case, run.ctx, run.advance
    if advance is None:
        return [f"no advance within {JOB_BUDGET_S + GRACE_S:.0f}s (the worker stopped answering)"]
    found: list[str] = []
    if run.blocked:
        found.append(
            "the worker blocked (in open() of a FIFO, or no advance within "
            f"{JOB_BUDGET_S:.0f}s): it went on only once its FIFOs were opened from outside"
        )
    advances = fleet.orchestrator.events_for(ctx.task_id, ADVANCE)
    if len(advances) != 1:
        found.append(f"{len(advances)} advances, not one")
    if fleet.orchestrator.events_for(ctx.task_id, HANDBACK):
        found.append("handed back")
    got = (advance.get("result"), advance.get("outcome"))
    if got not in ((case.result, case.outcome), case.or_else):
        found.append(f"advance says {got}, expected {(case.result, case.outcome)}")
    if advance.get("commit") != run.tip:
        found.append(f"advance names commit {advance.get('commit')}, the tested tip is {run.tip}")
    if advance.get("report_pushed") is not True:
        found.append(f"advance says report_pushed={advance.get('report_pushed')!r}")
    found += _branch_problems(fleet, run)
    alerted = [p[2] for p in fleet.alerts.posts if ctx.work_item in json.dumps(p[2])]
    if alerted and case.outcome != "tool-error":
        found.append(f"an infrastructure alert was sent: {alerted[0]}")
    if leaked := fleet.secrets.found_in(json.dumps(alerted)):
        found.append(f"its alert carries the worker's secrets {leaked}")
    leaked = fleet.secrets.found_in(json.dumps(advance))
    if leaked:
        found.append(f"the advance carries the worker's secrets {leaked}")
    if case.leaves_processes:
        found += _survivors(ctx)
    if ctx.marks.exists():
        written = sorted(p for p in ctx.marks.rglob("*") if p.is_file())
        leaked = fleet.secrets.found_in("".join(p.read_text(errors="replace") for p in written))
        found.append(
            f"code of the branch ran as the worker, outside its sandbox: it wrote "
            f"{len(written)} file(s) such as {written[0].name if written else None!r}, "
            f"with the worker's secrets {leaked} in them"
        )
    return found


def _branch_problems(fleet: Fleet, run: Ran) -> list[str]:
    """The origin branch: exactly one new commit, the report, on the tested commit."""
    origin = origin_of(fleet, run.case.repo)
    ctx = run.ctx
    tip = origin.tip(ctx.branch)
    if tip == run.tip:
        return ["the origin branch did not move: no report commit was pushed"]
    found: list[str] = []
    parents = git(origin.bare, "rev-list", "--parents", "-n", "1", tip).split()[1:]
    if parents != [run.tip]:
        found.append(f"the branch tip's parents are {parents}, not the tested commit {run.tip}")
    added = git(origin.bare, "rev-list", f"{run.tip}..{tip}").split()
    if len(added) != 1:
        found.append(f"the branch gained {len(added)} commits over the tested one, not one")
    changed = git(origin.bare, "diff", "--no-renames", "--name-only", run.tip, tip).split("\n")
    # Whatever stood in the report's way (a directory at its path, a file or link at a
    # parent's) is replaced: those entries may go, nothing else may change.
    stray = [path for path in changed if not in_the_reports_way(path, ctx.report_path)]
    if ctx.report_path not in changed or stray:
        found.append(f"the report commit changes {changed}, not only the report")
    entry = git(origin.bare, "ls-tree", tip, "--", ctx.report_path).split()
    if entry[:2] != ["100644", "blob"]:
        found.append(f"the report path on the branch is {entry[:2] or 'missing'}, not a file")
        return found
    report = git(origin.bare, "cat-file", "blob", entry[2])
    verdict = parse_tests_verdict(report)
    expected = run.case.result
    said = (run.advance or {}).get("result")
    if run.case.or_else is not None and said == run.case.or_else[0]:
        expected = run.case.or_else[0]
    if verdict is not (expected == "PASS"):
        found.append(f"the gate reads {verdict} from the report, expected {expected}")
    leaked = fleet.secrets.found_in(report)
    if leaked:
        found.append(f"the report carries the worker's secrets {leaked}")
    if len(report.encode()) > 64 * 1024:
        found.append(f"the report is {len(report.encode())} bytes, over 64 KiB")
    return found


def _survivors(ctx: Ctx, grace_s: float = 5.0) -> list[str]:
    """Processes of the job still alive after its advance (killed here afterwards)."""
    needle = ctx.sleeper.encode()
    deadline = time.monotonic() + grace_s
    while True:
        alive = [pid for pid in _pids_with(needle) if pid_alive(pid)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return [f"{len(alive)} of its processes outlived the job"] if alive else []


def _pids_with(needle: bytes) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def summary(runs: Sequence[Ran]) -> str:
    return "\n".join(
        f"  {r.case.name}: {r.advance and (r.advance['result'], r.advance['outcome'])} "
        f"in {r.seconds:.1f}s"
        for r in runs
    )


SECRET_PATTERN = re.compile(SECRET_PREFIX + "[0-9a-f]{32}")


def interpreter_leftovers(tag: str) -> list[Path]:
    """Files a suite managed to create in the worker's interpreter or the in-suite code
    (the worker runs the same interpreter as this test process); removed here."""
    import site
    import sys
    import sysconfig

    import pytest

    from worker.insuite import PLUGINS_DIR

    paths = sysconfig.get_paths()
    dirs = {Path(paths[k]) for k in ("purelib", "platlib", "stdlib", "platstdlib", "scripts")}
    dirs |= {Path(d) for d in site.getsitepackages()}
    dirs |= {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent}
    dirs |= {Path(PLUGINS_DIR), Path(pytest.__file__).parent}
    found = []
    for directory in dirs:
        for name in (f"hostile-{tag}.pth", f"hostile_{tag}.py", "sitecustomize.py",
                     "usercustomize.py"):  # fmt: skip
            path = directory / name
            try:
                if tag in path.read_text(errors="replace"):
                    found.append(path)
                    path.unlink()
            except OSError:
                continue
    return found


def in_the_reports_way(path: str, report_path: str) -> bool:
    """The report's path itself, an entry under it, or one of its parents."""
    return (
        path == report_path
        or path.startswith(report_path + "/")
        or report_path.startswith(path + "/")
    )
