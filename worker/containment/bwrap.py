"""The suite's view of the system, built with bubblewrap (bwrap).

A suite is untrusted code. Under bwrap it runs in its own user, PID, IPC, UTS, cgroup
and (unless its contract allows the network) network namespaces, with every capability
dropped, and sees an allowlist of the file system instead of the worker's:

- read-only: the system directories (/usr and its links, /etc without the files only
  their owner may read), the interpreters it may run, the job's git directories
  (the mirror: a worktree's `.git` points into it), the in-suite code;
- writable: its worktree and its own HOME, TMPDIR and output directory; a fresh /tmp,
  /var/tmp and /dev/shm;
- read-only, whatever else is there: the sandbox's root and /dev (so no directory above
  the worktree, nor /var, /run or /dev, can hold a file a later run would find);
- nothing else: not the worker's HOME, workdir (other jobs, other mirrors, venvs being
  built), environment, /proc entries (its own /proc shows only its own processes),
  broker sockets, or anything under /run and /var.

So it cannot read the worker's secrets or write anything the worker later reads or
runs, except the files in its own output directory, which the worker reads as hostile.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

logger = logging.getLogger("testgate.bwrap")

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
SUITE_UID = 65534  # "nobody" inside the sandbox; outside, the worker's own uid
_ETC_SCAN_LIMIT = 20_000  # entries of /etc looked at for owner-only files
_PROBE_TIMEOUT_S = 10


@dataclass(frozen=True)
class SuiteView:
    """What one command of a job may see: paths bound at the same place inside."""

    writable: tuple[Path, ...]
    readable: tuple[Path, ...] = ()
    network: bool = False

    def with_paths(
        self, *, writable: Iterable[Path] = (), readable: Iterable[Path] = ()
    ) -> SuiteView:
        return replace(
            self, writable=(*self.writable, *writable), readable=(*self.readable, *readable)
        )


def bwrap_prefix(view: SuiteView, cwd: Path) -> list[str]:
    """The `bwrap ... --` argv that runs a command in `view`, in `cwd` (which is made
    writable: it is the worktree). bwrap execs the command in the sandbox."""
    argv = ["bwrap", "--unshare-user", "--uid", str(SUITE_UID), "--gid", str(SUITE_UID)]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--hostname", "testgate-suite"]
    if not view.network:
        argv.append("--unshare-net")
    argv += _system_binds()
    # Fresh, private mounts inside the sandbox (not the host's shared temp dirs).
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm"]  # noqa: S108
    argv += ["--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]  # noqa: S108
    for path in _parents_first(view.readable):
        argv += ["--ro-bind-try", str(path), str(path)]
    for path in (*view.writable, cwd):
        argv += ["--bind", str(path), str(path)]
    # Last: every mount point above is made in them first.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    argv += ["--chdir", str(cwd), "--"]
    return argv


def interpreter_paths(python: str) -> tuple[Path, ...]:
    """The directories an interpreter needs: the prefix of every link of the chain from
    `python` to the real binary (a venv's python links to its base interpreter)."""
    found = shutil.which(python) or python
    prefixes: list[Path] = []
    path = Path(found).absolute()
    for _ in range(40):  # a symlink loop ends here rather than forever
        prefixes.append(path.parent.parent)
        if not path.is_symlink():
            break
        path = (path.parent / os.readlink(path)).absolute()
    return tuple(dict.fromkeys(p.resolve() for p in prefixes if p != Path("/")))


@functools.cache
def bwrap_missing() -> str | None:
    """Why bwrap cannot contain a suite on this host, or None when it can (tried once
    per process: a real sandbox with the namespaces every suite gets)."""
    if shutil.which("bwrap") is None:
        return "bwrap (bubblewrap) is not installed"
    try:
        with tempfile.TemporaryDirectory(prefix="testgate-bwrap-") as scratch:
            argv = [*bwrap_prefix(SuiteView(writable=()), Path(scratch)), "true"]
            done = subprocess.run(argv, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap could not be run: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        return f"bwrap cannot create the suite's namespaces here: {why}"
    return None


@functools.cache
def _system_binds() -> tuple[str, ...]:
    """Read-only binds of the system directories, with every /etc entry that only its
    owner (root) may read masked: inside, the suite's uid maps to the worker's, which
    may be their owner."""
    argv: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            argv += ["--ro-bind", name, name]
    for masked in owner_only_entries(Path("/etc")):
        if masked.is_dir():
            argv += ["--tmpfs", str(masked), "--remount-ro", str(masked)]
        else:
            argv += ["--ro-bind", "/dev/null", str(masked)]
    return tuple(argv)


def owner_only_entries(root: Path, limit: int = _ETC_SCAN_LIMIT) -> list[Path]:
    """Entries under `root` that others may not read (a directory is masked whole)."""
    masked: list[Path] = []
    seen = 0
    for directory, subdirs, files in os.walk(root):
        for name in (*subdirs, *files):
            seen += 1
            path = Path(directory) / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode) or mode & stat.S_IROTH:
                continue
            masked.append(path)
        subdirs[:] = [d for d in subdirs if Path(directory, d) not in masked]
        if seen > limit:
            logger.warning("stopped looking for owner-only files in %s at %d entries", root, seen)
            break
    return masked


def _parents_first(paths: Sequence[Path]) -> list[Path]:
    """Each path once, parents before children: a later bind inside an earlier one stays."""
    return sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: len(p.parts))
