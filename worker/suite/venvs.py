"""Cached per-repo virtualenvs, each a pure function of its key.

With `venv = true` in a contract, the suite runs in a virtualenv built once per
distinct key: the interpreter, the contract's setup steps and the dependency files.
The build sees only what the key hashes: its setup steps run in a scratch directory
that holds copies of the dependency files (never the worktree), with a safe sys.path
(`python -m pip` is the venv's pip, whatever the branch holds). A built venv is
checked (worker/suite/venv_record.py: a file no installed distribution accounts for
discards it) and every suite sees it read-only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from worker.containment.sandbox import Sandbox
from worker.containment.untrusted_files import UntrustedDir
from worker.suite.setup import SetupFailure, run_setup
from worker.suite.venv_record import unaccounted

logger = logging.getLogger("testgate.venvs")

READY_MARKER = ".testgate-ready"
DEFAULT_KEY_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "requirements*.txt")
_MAX_KEY_FILE_BYTES = 16 << 20


DependencyFile = tuple[str, "str | None", "bytes | None"]  # path, link target, content


def venv_key(
    worktree: Path, patterns: Sequence[str], base_python: str, setup: Sequence[str] = ()
) -> str:
    """The key of the venv for this worktree's dependency files (see key_of).
    ValueError for a dependency file too large to be one."""
    return key_of(dependency_files(worktree, patterns), base_python, setup)


def key_of(files: Sequence[DependencyFile], base_python: str, setup: Sequence[str]) -> str:
    """Hash of the interpreter, the setup steps and every dependency file's path and
    content (a link's target too)."""
    digest = hashlib.sha256(base_python.encode())
    digest.update(b"\0setup\0" + json.dumps(list(setup)).encode())
    for name, link, data in files:
        if link is not None:
            digest.update(b"\0link\0" + link.encode(errors="surrogateescape"))
        if data is not None:
            digest.update(b"\0" + name.encode(errors="surrogateescape") + b"\0")
            digest.update(data)
    return digest.hexdigest()[:16]


def dependency_files(worktree: Path, patterns: Sequence[str]) -> list[DependencyFile]:
    """Each dependency file: its path, its link's target if it is one, its content
    (None: not a regular file of the worktree, so no dependency file).

    The branch decides what these paths are, so they are read as files in the suite's
    reach are (worker/containment/untrusted_files.py): a symbolic link is never
    followed out of the worktree (one to /proc/self/pagemap would be read for ever),
    and one to a file of the worktree counts with that file's content."""
    top = worktree.resolve()
    names = sorted({p.relative_to(worktree).as_posix() for g in patterns for p in worktree.glob(g)})
    found: list[DependencyFile] = []
    with UntrustedDir(top) as files:
        for name in names:
            path = top / name
            link = None
            name_read = name
            if path.is_symlink():
                target = Path(os.path.realpath(path))  # a loop is left as it is, never raised
                name_read = target.relative_to(top).as_posix() if target.is_relative_to(top) else ""
                link = os.readlink(path)
            data = files.read_bytes(name_read, _MAX_KEY_FILE_BYTES + 1) if name_read else None
            if data is not None and len(data) > _MAX_KEY_FILE_BYTES:
                raise ValueError(f"{name} is larger than {_MAX_KEY_FILE_BYTES} bytes")
            found.append((name, link, data))
    return found


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
        files = dependency_files(worktree, key_files)
        venv = root / f"{repo}-{key_of(files, base_python, setup)}"
    except ValueError as exc:
        logger.warning("no venv for %s: %s", worktree, exc)
        return SetupFailure(0, "hashing the dependency files", f"failed: {exc}", "")
    if (venv / READY_MARKER).is_file():
        return venv
    with (root / f"{venv.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per venv on this host
        if (venv / READY_MARKER).is_file():
            return venv
        with tempfile.TemporaryDirectory(prefix="venv-build-", dir=sandbox.scratch_dir) as build:
            for name, _, data in files:
                if data is not None:
                    (Path(build) / name).parent.mkdir(parents=True, exist_ok=True)
                    (Path(build) / name).write_bytes(data)
            return _build(venv, Path(build), sandbox, base_python, setup, timeout_s)


def _build(
    venv: Path,
    build_dir: Path,
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
    # The current directory never comes first on a step's sys.path: `python -m X` is X.
    building = replace(building, extra_env={**building.extra_env, "PYTHONSAFEPATH": "1"})
    failure = run_setup(build_dir, building, setup, python=python, timeout_s=timeout_s)
    if failure is None and (stray := unaccounted(venv)):
        logger.error("venv %s discarded: no distribution installed %s", venv, stray[:5])
        failure = SetupFailure(
            len(setup),
            "checking the venv",
            f"failed: files no distribution installed: {stray[:5]}",
            "",
        )
    if failure is not None:
        shutil.rmtree(venv, ignore_errors=True)
        return failure
    (venv / READY_MARKER).write_text("ok\n")
    return venv
