"""Run `python -m pytest` in a warm interpreter: a child of the pool process that has
imported pytest once (worker/insuite/zygote.py) and forks a fresh copy per suite run.

Every run still starts from the same pristine state (a fork of a process that has never
run a suite), so runs cannot leak into each other. A run goes to the warm interpreter
only when the result cannot differ from a cold `python -m pytest`: the worker's own
interpreter, the same start-up environment (every PYTHON* variable but PYTHONPATH, and
the locale), no network namespace, and no module on the suite's sys.path with the name
of one the warm interpreter already imported (warm_rules.py). Anything else runs cold.
A contained warm interpreter lives in a sandbox of its own (warm_jail.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from worker.containment.bwrap import SuiteView
from worker.containment.cgroup import JobCgroup, pids_limit_note
from worker.containment.warm_jail import JailedProcesses, WarmJail
from worker.containment.warm_rules import shadowing_module, startup_environment, suite_path_prefix
from worker.containment.witness import StartWitness
from worker.insuite import PLUGINS_DIR, zygote

logger = logging.getLogger("testgate.warm")

_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SuiteLaunch:
    """One `python -m pytest` run as the sandbox asks for it."""

    args: tuple[str, ...]  # after `python -m pytest`
    cwd: Path
    env: Mapping[str, str]
    log_path: Path
    rlimits: tuple[tuple[int, int], ...] = ()
    cgroup_procs: Path | None = None
    # The whole view a cold start would give it (its own dirs included); None: uncontained.
    view: SuiteView | None = None
    witness: StartWitness | None = None


class WarmRun:
    """A suite running in a fork of the warm interpreter (a launch.Running); not a child
    of this process, so its end and exit code arrive from the warm interpreter."""

    how = "warm"

    def __init__(
        self, server: WarmPytest, pid: int, witness: StartWitness | None, *, started: bool
    ) -> None:
        self.pid = pid
        self._server = server
        self._witness = witness
        self._exit: int | None = None
        self.lost = False  # the warm interpreter died before telling the exit code
        # The fork said it is about to run the suite's code: from then on, however it
        # ends (its warm parent killed included), the suite ran.
        self.started = started
        self._limit_hits = server.limit_hits()

    def never_ran(self, exit_code: int | None) -> str | None:
        if self.started:
            if self._witness is not None:
                self._witness.mark_started()
            return None  # whatever happened next, including its warm parent dying
        if self.lost:
            return "the warm interpreter died before the suite started"
        if exit_code == zygote.SETUP_FAILED_EXIT:
            return "the warm interpreter could not start the suite (see its output)"
        return f"the warm interpreter never started the suite (exit {exit_code})"

    def limit_notes(self) -> tuple[str, ...]:
        """The pids limit of a contained warm interpreter's cgroup, if this run hit it."""
        if self._server.limit_hits() > self._limit_hits:
            return (pids_limit_note(self._server.max_pids),)
        return ()

    def close(self) -> int:
        """After the run: a contained warm interpreter's sandbox is emptied of everything
        but the interpreter (or, when the run did not end cleanly, stopped whole, to be
        started again). Returns how many processes were killed."""
        jailed = self._server.jailed
        if jailed is None:
            return 0
        if self._exit is None:
            self._server.close()
            return 0
        killed = jailed.kill_strays()
        self._server.finished()
        return killed

    def exited(self, timeout: float) -> bool:
        if self._exit is not None or self.lost:
            return True
        message = self._server.receive(timeout)
        if message is None:
            return False
        if "started" in message:
            self.started = True
            return False
        if "exit" in message:
            self._exit = int(message["exit"])
            if self._server.jail is None:  # contained: free once its sandbox is emptied
                self._server.finished()
        else:
            self.lost = True
            logger.error("warm interpreter died while pid %d ran the suite", self.pid)
        return True

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code (negative: the signal), or None if it could not be learnt."""
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while not self.exited(max(deadline - time.monotonic(), 0)):
            if time.monotonic() >= deadline:
                return None
        return self._exit


class WarmPytest:
    """The warm interpreter of one pool process (see the module docstring)."""

    def __init__(
        self,
        python: str,
        env: Mapping[str, str],
        *,
        jail: WarmJail | None = None,
        max_pids: int = 0,
    ) -> None:
        self.python = python
        self.env = dict(env)
        self.jail = jail  # its sandbox, when it is contained (worker/containment/warm_jail.py)
        self.max_pids = max_pids  # the job's pids limit, as reports name it
        self.owner = os.getpid()
        self.modules: frozenset[str] = frozenset()
        self._ready = False
        self._busy = False  # a forked suite has not reported its exit yet
        self.forks = 0  # suites started so far
        self._lock = threading.Lock()
        self._buffer = b""
        argv = jail.argv(python, zygote.__file__) if jail else [python, zygote.__file__]
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
        if self._process.stdin is None or self._process.stdout is None:
            raise OSError("the warm interpreter's pipes were not created")
        self._requests, self._replies = self._process.stdin, self._process.stdout
        self.jailed = JailedProcesses(self._process.pid) if jail else None
        logger.debug("warm interpreter started: pid %d", self._process.pid)

    @property
    def pid(self) -> int:
        """The zygote's pid (contained: outside the sandbox's namespace, once it is up)."""
        if self.jailed is not None and self.jailed.zygote is not None:
            return self.jailed.zygote
        return self._process.pid

    @property
    def process_pid(self) -> int:
        """The pid of the child this process started (contained: bwrap, or the cgroup
        shell that execs it)."""
        return self._process.pid

    def limit_hits(self) -> int:
        cgroup = self.jail.cgroup if self.jail else None
        return cgroup.limit_hits() if cgroup else 0

    def alive(self) -> bool:
        return self.owner == os.getpid() and self._process.poll() is None

    def start(self, command: Sequence[str], launch: SuiteLaunch) -> WarmRun | str:
        """Fork the suite's process, or say why it must start cold. One suite at a time:
        a second caller (another thread) is sent cold, never given the first's replies."""
        with self._lock:
            if self._busy:
                return "the warm interpreter is running another suite"
            prefix = suite_path_prefix(launch.cwd, launch.env)
            if reason := self._why_cold(command, launch, prefix):
                return reason
            run = self._fork(launch, prefix)
            if run is None:
                return "the warm interpreter failed; it is started again for the next job"
            self._busy = True
            self.forks += 1
            return run

    def _why_cold(
        self, command: Sequence[str], launch: SuiteLaunch, path_prefix: list[str]
    ) -> str | None:
        if list(command[:3]) != [self.python, "-m", "pytest"]:
            return "not the warm interpreter's own `python -m pytest`"
        if self.jail is not None:
            dirs = [Path(launch.env[key]) for key in ("HOME", "TMPDIR") if launch.env.get(key)]
            touched = (launch.cwd, launch.log_path, *dirs)
            if refused := self.jail.refusal(launch.view, touched):
                return refused
        elif launch.view is not None:
            return "a contained suite, and this warm interpreter is not"
        if startup_environment(launch.env) != startup_environment(self.env):
            return "the suite's environment sets interpreter start-up variables"
        if not self._await_ready():
            return "the warm interpreter is not available"
        # The gate's plugins' own directory holds the very files the warm one imported.
        own = [entry for entry in path_prefix if Path(entry) != PLUGINS_DIR]
        if shadowed := shadowing_module(own, self.modules):
            return f"{shadowed} would shadow a module the warm interpreter imported"
        return None

    def _fork(self, launch: SuiteLaunch, path_prefix: list[str]) -> WarmRun | None:
        request: dict[str, Any] = {
            "args": list(launch.args),
            "cwd": str(launch.cwd),
            "env": dict(launch.env),
            "log": str(launch.log_path),
            "rlimits": [list(limit) for limit in launch.rlimits],
            "cgroup_procs": str(launch.cgroup_procs) if launch.cgroup_procs else None,
            "path_prefix": path_prefix,
            # Contained, a cold start shares the session of the sandbox's init (bwrap
            # --new-session), as the zygote does.
            "setsid": self.jail is None,
        }
        try:
            self._requests.write(json.dumps(request).encode() + b"\n")
            self._requests.flush()
        except OSError as exc:
            logger.warning("warm interpreter unusable (%s): running cold", exc)
            return None
        # The fork's own "started" may overtake the warm interpreter's "pid".
        started = False
        reply = self.receive(_READY_TIMEOUT_S)
        while reply is not None and "started" in reply:
            started = True
            reply = self.receive(_READY_TIMEOUT_S)
        if reply is None or "pid" not in reply:
            logger.warning("warm interpreter could not fork (%s): running cold", reply)
            self.close()
            return None
        pid = int(reply["pid"])
        if self.jailed is not None:
            # Its pid inside the sandbox means nothing here: find it outside, while the
            # zygote keeps it unreaped, then let the zygote wait for it.
            outer = self.jailed.outer_pid(pid)
            try:
                self._requests.write(b"\n")
                self._requests.flush()
            except OSError:
                outer = None
            if outer is None:
                logger.warning("the contained fork %d was not found outside: stopped", pid)
                self.close()
                return None
            pid = outer
        return WarmRun(self, pid, launch.witness, started=started)

    def finished(self) -> None:
        """The suite it forked last has ended and its exit code was read."""
        self._busy = False

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message; None on timeout; {"eof": True} once it has died."""
        fd = self._replies.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining < 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return {"eof": True}
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def _await_ready(self) -> bool:
        if self._ready:
            return True
        message = self.receive(_READY_TIMEOUT_S)
        if message is None or not message.get("ready"):
            logger.warning("warm interpreter not ready (%s): suites run cold", message)
            self.close()
            return False
        if self.jailed is not None and not self.jailed.locate():
            logger.warning("contained warm interpreter not found in its sandbox: suites run cold")
            self.close()
            return False
        self.modules = frozenset(message["modules"])
        logger.info("warm interpreter %s ready", self.python)
        self._ready = True
        return True

    def close(self) -> None:
        """Stop it (closing its stdin ends its loop; a kill if it does not listen)."""
        if self.owner != os.getpid():
            return  # a forked copy of the object: the process is another's to stop
        for stream in (self._requests, self._replies):
            stream.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self.jail is not None and self.jail.cgroup is not None:
            self.jail.cgroup.remove()  # what of its sandbox may still run, then the group


def warm_environment(suite_env: Mapping[str, str]) -> dict[str, str]:
    """A warm interpreter's own environment: the start-up part of `suite_env` (what
    every suite gets), PATH and a HOME without user site-packages."""
    return {
        **startup_environment(suite_env),
        "PATH": suite_env.get("PATH", os.defpath),
        "HOME": suite_env.get("HOME", "/nonexistent"),
    }


# This process's warm interpreters, least recently used first: uncontained ones by
# interpreter, contained ones by interpreter and sandbox (without its cgroup).
_uncontained: OrderedDict[str, WarmPytest] = OrderedDict()
_contained: OrderedDict[tuple[str, WarmJail], WarmPytest] = OrderedDict()
_last_use: dict[Any, int] = {}  # a key of either table: the request that last used it
_requests = itertools.count()
MAX_UNCONTAINED = 2  # per pool process: each holds an interpreter with pytest imported
# One per repository (a sandbox reads its own repository's mirror only). A pool process
# serving more repositories runs the others cold rather than restarting one per job
# (~3 s on 2 loaded cores, worse than a cold start); one that no request used for
# CONTAINED_IDLE_USES requests makes way.
MAX_CONTAINED = 4
CONTAINED_IDLE_USES = 2 * MAX_CONTAINED
_Key = TypeVar("_Key")


def may_start(last_uses: Sequence[int], now: int, limit: int, idle_uses: int) -> bool:
    """Whether another warm interpreter may start, given the request numbers at which
    the live ones were last used: when fewer than `limit` live, or when the least
    recently used one was idle for more than `idle_uses` requests (it is then stopped)."""
    return len(last_uses) < limit or now - min(last_uses) > idle_uses


def _kept(
    table: OrderedDict[_Key, WarmPytest],
    key: _Key,
    limit: int,
    idle_uses: int,
    start: Callable[[], WarmPytest],
) -> WarmPytest | None:
    """The live warm interpreter under `key`, or a new one from `start` when may_start
    allows (the least recently used one is then stopped if `limit` are live); None: run
    this suite cold."""
    now = next(_requests)
    for name, warm in list(table.items()):
        if not warm.alive():
            del table[name], _last_use[name]
            warm.close()  # a no-op for the copy a fork inherited
    if key not in table:
        if not may_start([_last_use[name] for name in table], now, limit, idle_uses):
            return None
        if len(table) >= limit:
            idle, warm = table.popitem(last=False)
            del _last_use[idle]
            warm.close()
        table[key] = start()
    table.move_to_end(key)
    _last_use[key] = now
    return table[key]


def warm_pytest(suite_env: Mapping[str, str], python: str = sys.executable) -> WarmPytest:
    """This process's warm interpreter for `python`, started (again) when there is none
    alive, with the start-up part of `suite_env` (what every suite gets). Start it before
    a job snapshots its children, or leave it out of what the job left behind
    (warm_process_pids): it is not the job's."""
    env = warm_environment(suite_env)
    # idle_uses -1: the least recently used one always makes way.
    warm = _kept(_uncontained, python, MAX_UNCONTAINED, -1, lambda: WarmPytest(python, env))
    if warm is None:
        raise AssertionError("may_start refused with idle_uses -1")
    return warm


def contained_warm_pytest(
    suite_env: Mapping[str, str],
    python: str,
    jail: WarmJail,
    open_cgroup: Callable[[], JobCgroup | None],
    max_pids: int,
) -> WarmPytest | None:
    """This process's warm interpreter for `python` in the sandbox `jail`, in a pids
    cgroup of its own from `open_cgroup`, started when there is none alive and may_start
    allows; None: run this suite cold."""
    env = warm_environment(suite_env)

    def start() -> WarmPytest:
        return WarmPytest(python, env, jail=replace(jail, cgroup=open_cgroup()), max_pids=max_pids)

    return _kept(_contained, (python, jail), MAX_CONTAINED, CONTAINED_IDLE_USES, start)


def warm_process_pids() -> set[int]:
    """The pids of this process's own warm interpreters' processes (its children)."""
    return {w.process_pid for w in (*_uncontained.values(), *_contained.values()) if w.alive()}


def stop_warm_pytest() -> None:
    """Stop this process's warm interpreters and reap them (their CPU, and their
    suites', is then accounted to this process like any child's)."""
    for table in (_uncontained, _contained):
        while table:
            table.popitem(last=False)[1].close()
    _last_use.clear()
