"""Cached per-repo virtualenvs, keyed by a hash of the dependency files.

With `venv = true` in a contract, the suite runs in a virtualenv built once per
distinct set of dependency files (and interpreter): the contract's setup steps install
into it when it is built, and every later job with the same files reuses it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from worker.containment.sandbox import Sandbox
from worker.containment.untrusted_files import UntrustedDir
from worker.suite.setup import SetupFailure, run_setup

logger = logging.getLogger("testgate.venvs")

READY_MARKER = ".testgate-ready"
DEFAULT_KEY_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "requirements*.txt")
_MAX_KEY_FILE_BYTES = 16 << 20


def venv_key(worktree: Path, patterns: Sequence[str], base_python: str) -> str:
    """Hash of the interpreter and of every dependency file's path and content.

    The branch decides what these paths are, so they are read as files in the suite's
    reach are (worker/containment/untrusted_files.py): a symbolic link is never
    followed out of the worktree (one to /proc/self/pagemap would be read for ever),
    and one to a file of the worktree counts with that file's content. ValueError for a
    dependency file too large to be one."""
    digest = hashlib.sha256(base_python.encode())
    top = worktree.resolve()
    names = sorted({p.relative_to(worktree).as_posix() for g in patterns for p in worktree.glob(g)})
    with UntrustedDir(top) as files:
        for name in names:
            path = top / name
            if path.is_symlink():
                target = Path(os.path.realpath(path))  # a loop is left as it is, never raised
                name_read = target.relative_to(top).as_posix() if target.is_relative_to(top) else ""
                digest.update(b"\0link\0" + os.readlink(path).encode(errors="surrogateescape"))
            else:
                name_read = name
            data = files.read_bytes(name_read, _MAX_KEY_FILE_BYTES + 1) if name_read else None
            if data is None:
                continue  # not a regular file of the worktree: no dependency file
            if len(data) > _MAX_KEY_FILE_BYTES:
                raise ValueError(f"{name} is larger than {_MAX_KEY_FILE_BYTES} bytes")
            digest.update(b"\0" + name.encode(errors="surrogateescape") + b"\0")
            digest.update(data)
    return digest.hexdigest()[:16]


def in_venv(sandbox: Sandbox, venv: Path, *, writable: bool = False) -> Sandbox:
    """The same sandbox with the venv first on PATH, as `activate` would do. Under
    containment the venv is seen read-only, except while it is being built."""
    path = f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    seen = sandbox.with_view_paths(**({"writable": [venv]} if writable else {"readable": [venv]}))
    return replace(seen, extra_env={**sandbox.extra_env, "VIRTUAL_ENV": str(venv), "PATH": path})


def ensure_venv(
    repo: str,
    worktree: Path,
    sandbox: Sandbox,
    *,
    root: Path,
    base_python: str,
    setup: Sequence[str],
    key_files: Sequence[str] = DEFAULT_KEY_FILES,
    timeout_s: float,
) -> Path | SetupFailure:
    """The venv for this worktree's dependency files, built (with `setup`) if missing.

    Returns the venv's directory, or the setup failure that prevented building it.
    """
    root.mkdir(parents=True, exist_ok=True)
    try:
        venv = root / f"{repo}-{venv_key(worktree, key_files, base_python)}"
    except ValueError as exc:
        logger.warning("no venv for %s: %s", worktree, exc)
        return SetupFailure(0, "hashing the dependency files", f"failed: {exc}", "")
    if (venv / READY_MARKER).is_file():
        return venv
    with (root / f"{venv.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per venv on this host
        if (venv / READY_MARKER).is_file():
            return venv
        return _build(venv, worktree, sandbox, base_python, setup, timeout_s)


def _build(
    venv: Path,
    worktree: Path,
    sandbox: Sandbox,
    base_python: str,
    setup: Sequence[str],
    timeout_s: float,
) -> Path | SetupFailure:
    # A half-built venv (a crash mid-build) has no marker and is rebuilt from scratch.
    shutil.rmtree(venv, ignore_errors=True)
    logger.info("building venv %s", venv)
    try:
        subprocess.run(
            [base_python, "-m", "venv", str(venv)],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(venv, ignore_errors=True)
        return SetupFailure(0, f"{base_python} -m venv", f"failed: {exc}", "")
    python = str(venv / "bin" / "python")
    building = in_venv(sandbox, venv, writable=True)
    failure = run_setup(worktree, building, setup, python=python, timeout_s=timeout_s)
    if failure is not None:
        shutil.rmtree(venv, ignore_errors=True)
        return failure
    (venv / READY_MARKER).write_text("ok\n")
    return venv
