"""A warm interpreter that has imported pytest and forks one child per suite run.

Run as a script (`python zygote.py`), never imported by the worker: it must hold
pytest and nothing of testgate. Each child becomes exactly what `python -m pytest ...`
would be in the job's worktree (its own session, cgroup, limits, output, directory,
environment, sys.path, argv and `__main__`), minus the interpreter start-up and the
imports of pytest's core (~130 ms of CPU on the machine the benchmarks describe).

Protocol, one JSON object per line: the server writes {"ready": ..., "modules": [...]}
once; then for each request it reads it writes {"pid": n} (or {"error": ...}) and,
when that child has ended, {"exit": code} (negative: killed by that signal). It exits
when its stdin closes or its parent dies. Stdlib only: it runs before anything is
imported.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import runpy
import sys
import tempfile
from typing import Any

# A child that could not become the suite exits with this, as the cgroup shell and
# prlimit do when they cannot exec: "never ran", not a test failure.
SETUP_FAILED_EXIT = 126
PLUGIN_MODULES = ("testgate_probe", "testgate_progress")
_PR_SET_PDEATHSIG = 1


def main() -> None:
    del sys.path[0]  # this script's directory: the suite must not see it
    _die_with_parent()
    _preload_pytest()
    request = _serve()  # returns only in a forked child
    _become(request)
    # What `python -m pytest` itself does: run pytest's __main__ as the real __main__.
    getattr(runpy, "_run_module_as_main")("pytest", True)  # noqa: B009 - private API


def _die_with_parent() -> None:
    """A zygote outliving its pool process would hold pytest's memory forever."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if os.getppid() == 1:  # the parent was already gone before the prctl
        os._exit(0)


def _preload_pytest() -> None:
    """Import pytest and every built-in plugin, as `pytest.main` would; the plugins that
    installed packages register are left to each run (they may be disabled there)."""
    import pytest  # noqa: F401
    from _pytest.config import default_plugins, essential_plugins

    for name in (*essential_plugins, *default_plugins):
        __import__(f"_pytest.{name}")
    # The gate's own plugins too, so a module the branch ships under their names sends
    # the suite cold (the warm interpreter's shadowing check), where boot.py loads them
    # before the branch's directory is on sys.path.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
    try:
        for name in PLUGIN_MODULES:
            __import__(name)
    finally:
        del sys.path[0]


def _serve() -> dict[str, Any]:
    _send({"ready": True, "modules": sorted(_preloaded_top_level())})
    pending = b""
    while True:
        while b"\n" not in pending:
            chunk = os.read(0, 65536)
            if not chunk:
                os._exit(0)  # the pool process is gone or done with us
            pending += chunk
        line, pending = pending.split(b"\n", 1)
        request = json.loads(line)
        try:
            pid = os.fork()
        except OSError as exc:
            _send({"error": f"fork failed: {exc}"})
            continue
        if pid == 0:
            return dict(request)
        _send({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _send({"exit": os.waitstatus_to_exitcode(status)})


def _preloaded_top_level() -> set[str]:
    """Top-level modules the suite would otherwise import from its own sys.path."""
    stdlib = sys.stdlib_module_names
    return {name.partition(".")[0] for name in sys.modules} - set(stdlib) - {"__main__"}


def _send(message: dict[str, Any]) -> None:
    os.write(1, json.dumps(message).encode() + b"\n")


def _become(request: dict[str, Any]) -> None:
    """Turn this fresh child into the suite's process, or exit SETUP_FAILED_EXIT. Its
    last act on the warm interpreter's channel is to say the suite's code runs next."""
    channel = os.dup(1)
    try:
        os.setsid()
        # The log first: whatever fails next is written where the report reads output.
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        if request.get("environ_stamp"):
            _stamp_initial_environ(*request["environ_stamp"])
        if request.get("cgroup_procs"):
            with open(request["cgroup_procs"], "w") as procs:
                procs.write(str(os.getpid()))
        for limit, value in request.get("rlimits", []):
            resource.setrlimit(limit, (value, value))
        os.chdir(request["cwd"])
    except OSError as exc:
        _report_setup_failure(exc)
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # TMPDIR is the job's now
    sys.path[:0] = request["path_prefix"]
    sys.argv = ["-m", *request["args"]]
    sys.dont_write_bytecode = request["env"].get("PYTHONDONTWRITEBYTECODE", "") != ""
    for name in PLUGIN_MODULES:  # they take this job's files and nonce, before any suite code
        sys.modules[name].load_environment()
    # One write, under PIPE_BUF: it cannot interleave with the warm interpreter's.
    os.write(channel, json.dumps({"started": os.getpid()}).encode() + b"\n")
    os.close(channel)  # the suite keeps no end of the warm interpreter's channels


def _stamp_initial_environ(placeholder: str, entry: str) -> None:
    """Write `entry` over `placeholder` in this process's initial environment block.

    /proc/<pid>/environ shows that block, not os.environ, and a fork shares it: without
    this the suite and what it forks would show the warm interpreter's environment, and
    the job's cookie that finds its leftovers would be missing (setproctitle rewrites
    argv the same way). The rest of the placeholder stays behind a NUL: a junk entry.
    """
    old, new = placeholder.encode() + b"\0", entry.encode() + b"\0"
    if len(new) > len(old):
        raise OSError(f"{entry!r} is longer than its placeholder")
    with open("/proc/self/environ", "rb") as environ:
        offset = environ.read().find(old)
    if offset < 0:
        raise OSError("the environment placeholder is missing")
    with open("/proc/self/stat") as stat:
        env_start = int(stat.read().rsplit(")", 1)[1].split()[47])  # field 50
    ctypes.memmove(env_start + offset, new, len(new))


def _report_setup_failure(exc: OSError) -> None:
    try:
        os.write(2, f"testgate: the suite could not be started: {exc}\n".encode())
    finally:
        os._exit(SETUP_FAILED_EXIT)


if __name__ == "__main__":
    main()
