"""A warm interpreter that has imported pytest and forks one child per suite run.

Run as a script (`python zygote.py`), never imported by the worker: it must hold
pytest and nothing of testgate. Each child becomes exactly what `python -m pytest ...`
would be in the job's worktree (its own session, cgroup, limits, output, directory,
environment, sys.path, argv and `__main__`), minus the interpreter start-up and the
imports of pytest's core (~130 ms of CPU on the machine the benchmarks describe).

Protocol, one JSON object per line: the server writes {"ready": ..., "modules": [...]} once;
then for each request it reads it writes {"pid": n} (or {"error": ...}) and, when that child has
ended, {"exit": code} (negative: killed by that signal). It exits when its stdin closes or its
parent dies. Stdlib and pytest only: it runs before anything is imported.

With `--contained` it runs inside the suites' bubblewrap sandbox, as the suites' own user: it is
then non-dumpable (a suite cannot read its /proc entries, its channels' descriptors among them,
nor trace it), empties the sandbox's shared /tmp, /var/tmp, /dev/shm and System V IPC objects
before each fork (a cold start would get fresh ones), and after {"pid": n} waits for one empty
line before it reaps the child: the worker first finds the child's pid outside the namespace,
which a reaped child no longer has.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import resource
import runpy
import shutil
import site
import stat
import sys
import tempfile
from typing import Any

# A child that could not become the suite exits with this, as the cgroup shell and
# prlimit do when they cannot exec: "never ran", not a test failure.
SETUP_FAILED_EXIT = 126
PLUGIN_MODULES = ("testgate_probe",)
_OWN_MODULES = ("ctypes", "ctypes._endian", "_ctypes", "pkgutil")
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_IPC_RMID = 0
# What a fresh sandbox has empty, and a contained zygote's forks share.
_SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108
_REMOVE_ROUNDS = 16
_HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    sys.path.pop(0)  # this script's directory: the suite must not see it
    contained = "--contained" in sys.argv[1:]
    _die_with_parent(contained)
    if contained:
        _set_dumpable(False)
        os.chdir("/")  # not the slot, which the suites write
    _preload_pytest()
    # Run from its file, as privates.py is: no suite finds it in sys.modules.
    boot = runpy.run_path(os.path.join(_HERE, "boot.py"))
    request = _serve(contained)  # returns only in a forked child
    if contained:
        _set_dumpable(True)  # the suite's process, like a cold one, is an ordinary one
    _become(request)
    boot["add_job_layer"]()  # as a cold start does, once the suite's code may run
    # What `python -m pytest` does: pytest's __main__ run as __main__, argv[0] its file.
    runpy.run_module("pytest", run_name="__main__", alter_sys=True)


def _die_with_parent(contained: bool) -> None:
    """A zygote outliving its pool process would hold pytest's memory forever. Contained,
    its parent is the sandbox's init (pid 1 there), and bwrap --die-with-parent ties the
    sandbox to the pool process."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if not contained and os.getppid() == 1:  # the parent was already gone before the prctl
        os._exit(0)


def _set_dumpable(dumpable: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, int(dumpable), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _preload_pytest() -> None:
    """Import pytest and every built-in plugin, as `pytest.main` would; the plugins that
    installed packages register are left to each run, as in a cold start."""
    import pytest  # noqa: F401

    # Run from its file, not imported: no suite finds it in sys.modules.
    privates = runpy.run_path(os.path.join(_HERE, "privates.py"))
    for name in privates["builtin_plugin_modules"]():
        __import__(name)
    # The gate's own plugins too, so a module the branch ships under their names sends
    # the suite cold (the warm interpreter's shadowing check), where boot.py loads them
    # before the branch's directory is on sys.path.
    sys.path.insert(0, os.path.join(_HERE, "plugins"))
    try:
        for name in PLUGIN_MODULES:
            __import__(name)
    finally:
        del sys.path[0]


def _serve(contained: bool) -> dict[str, Any]:
    _send({"ready": True, "modules": sorted(_preloaded_top_level())})
    lines = _LineReader()
    skeleton = _shared_skeleton() if contained else {}
    _freeze_what_is_preloaded()
    while True:
        request = json.loads(lines.next())
        if contained:
            _empty_shared_state(skeleton)
        try:
            pid = os.fork()
        except OSError as exc:
            _send({"error": f"fork failed: {exc}"})
            continue
        if pid == 0:
            return dict(request)
        _send({"pid": pid})
        if contained:
            lines.next()  # the worker has found the child outside the namespace
        _, status = os.waitpid(pid, 0)
        _send({"exit": os.waitstatus_to_exitcode(status)})


def _freeze_what_is_preloaded() -> None:
    """Put every object the warm interpreter holds now in the collector's permanent generation, as
    the gc module's documentation advises before fork() without exec(): a fork's full collections
    (pytest runs one at the end of every session) then visit only what the suite made. Visiting
    the preloaded objects cost each run ~100 ms of CPU and copied every page of their heap. What
    differs from a cold run is in docs/security.md: gc.get_objects() and gc.get_referrers() do not
    list these objects, gc.get_freeze_count() is not 0, and a cycle holding one of them is never
    collected. The garbage the imports left is collected first, so none of it is kept."""
    gc.collect()
    gc.freeze()


class _LineReader:
    """Lines from stdin; the process exits when it closes (the pool process is gone or
    done with us)."""

    def __init__(self) -> None:
        self._pending = b""

    def next(self) -> bytes:
        while b"\n" not in self._pending:
            chunk = os.read(0, 65536)
            if not chunk:
                os._exit(0)
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line


def _shared_skeleton() -> dict[str, int]:
    """What the sandbox's temp dirs hold before any run: the directories bwrap made to
    hold its mount points (a worktree or slot under /tmp), and those mount points. The
    wipe keeps exactly these and never crosses into a mount point."""
    skeleton: dict[str, int] = {}
    for top in _SHARED_TMP:
        try:
            device = os.lstat(top).st_dev
        except OSError:
            continue
        for path, info in _walk_same_device(top, device):
            skeleton[path] = info.st_ino
    return skeleton


def _walk_same_device(top: str, device: int) -> list[tuple[str, os.stat_result]]:
    """Every entry below `top`, not descending into another file system."""
    found: list[tuple[str, os.stat_result]] = []
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            info = os.lstat(entry.path)
            found.append((entry.path, info))
            if stat.S_ISDIR(info.st_mode) and info.st_dev == device:
                pending.append(entry.path)
    return found


def _empty_shared_state(skeleton: dict[str, int]) -> None:
    """Remove what earlier runs left in the sandbox's temp dirs and IPC namespace (their
    processes are dead by now: the worker kills them after each run). A zygote that
    cannot bring them back to their first state exits rather than hand one job's files
    to the next."""
    for top in _SHARED_TMP:
        if not _restore(top, skeleton):
            os._exit(SETUP_FAILED_EXIT)
    _remove_ipc_objects()


def _restore(top: str, skeleton: dict[str, int]) -> bool:
    """Remove from `top` everything not in `skeleton`; False if that cannot be done."""
    try:
        device = os.lstat(top).st_dev
    except OSError:
        return True  # not in this sandbox
    for _ in range(_REMOVE_ROUNDS):  # each round opens up one more level of locked dirs
        left = [
            (path, info)
            for path, info in _walk_same_device(top, device)
            if skeleton.get(path) != info.st_ino
        ]
        if not left:
            # A mount point's directory moved away would leave a later run's paths broken.
            return all(os.path.lexists(p) for p in skeleton if p.startswith(top + "/"))
        for path, info in left:
            if info.st_dev != device:
                return False  # a mount that was not there at the start
            if os.path.dirname(path) == top or os.path.dirname(path) in skeleton:
                _remove(path)  # the top of what a run made (below it: rmtree's)
    return False


def _remove_ipc_objects() -> None:
    """System V shared memory, semaphores and message queues of the sandbox's IPC
    namespace (a cold start gets a fresh namespace)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            ipc_id = int(row.split()[1])
            if kind == "shm":
                libc.shmctl(ipc_id, _IPC_RMID, None)
            elif kind == "sem":
                libc.semctl(ipc_id, 0, _IPC_RMID)
            else:
                libc.msgctl(ipc_id, _IPC_RMID, None)


def _remove(path: str) -> None:
    """Remove `path`, never following a link; a directory the suite locked (mode 000) is
    opened up for its owner, which the zygote is, and removed on a later round."""
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, onerror=_open_up)
        else:
            os.unlink(path)


def _open_up(_func: Any, path: str, _exc: Any) -> None:
    """shutil.rmtree's error handler: give a directory that could not be read or
    emptied back its owner's permissions."""
    for directory in (path, os.path.dirname(path)):
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(directory).st_mode):
                os.chmod(directory, 0o700)


def _preloaded_top_level() -> set[str]:
    """Top-level modules the suite would otherwise import from its own sys.path."""
    stdlib = sys.stdlib_module_names
    return {name.partition(".")[0] for name in sys.modules} - set(stdlib) - {"__main__"}


def _send(message: dict[str, Any]) -> None:
    try:
        os.write(1, json.dumps(message).encode() + b"\n")
    except BrokenPipeError:
        os._exit(0)  # as when stdin closes: the pool process is gone or done with us


def _become(request: dict[str, Any]) -> None:
    """Turn this fresh child into the suite's process, or exit SETUP_FAILED_EXIT. Its
    last act on the warm interpreter's channel is to say the suite's code runs next."""
    channel = os.dup(1)
    try:
        if request.get("setsid", True):
            os.setsid()
        # The log first: whatever fails next is written where the report reads output.
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
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
    tempfile.tempdir = site.USER_BASE = site.USER_SITE = None  # TMPDIR and HOME are the job's now
    site.getusersitepackages()  # site.py's user dirs again, from the job's HOME as cold
    sys.path[:0] = request["path_prefix"]
    sys.argv = ["-m", *request["args"]]
    sys.orig_argv = [sys.orig_argv[0], "-m", "pytest", *request["args"]]  # not zygote.py's
    for name in _OWN_MODULES:  # its own (prctl, IPC, run_path): pytest's start-up has none
        sys.modules.pop(name, None)  # the suite's own `import` loads them afresh
    sys.dont_write_bytecode = request["env"].get("PYTHONDONTWRITEBYTECODE", "") != ""
    for name in PLUGIN_MODULES:  # they take this job's files and nonce, before any suite code
        sys.modules[name].load_environment()
    # One write, under PIPE_BUF: it cannot interleave with the warm interpreter's.
    os.write(channel, json.dumps({"started": os.getpid()}).encode() + b"\n")
    os.close(channel)  # the suite keeps no end of the warm interpreter's channels


def _report_setup_failure(exc: OSError) -> None:
    try:
        os.write(2, f"testgate: the suite could not be started: {exc}\n".encode())
    finally:
        os._exit(SETUP_FAILED_EXIT)


if __name__ == "__main__":
    main()
