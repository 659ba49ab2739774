"""Running git: bounded in time, never prompting, failures as one exception type."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from worker.errors import GitError

_STDERR_LIMIT = 2000


def run_git(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 300,
) -> str:
    """Run `git <args>` in `cwd`; return stdout stripped, or raise GitError with stderr."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    full_env.update(env or {})
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout_s:.0f}s") from exc
    except OSError as exc:
        raise GitError(f"git {args[0]} could not be started: {exc}") from exc
    if done.returncode != 0:
        stderr = done.stderr.strip()[-_STDERR_LIMIT:]
        raise GitError(f"git {args[0]} failed ({done.returncode}): {stderr}")
    return done.stdout.strip()


def read_at_ref(repo: Path, ref: str, rel_path: str, timeout_s: float = 60) -> str | None:
    """The file `rel_path` as committed at `ref` in `repo`, or None if it is not there."""
    try:
        return run_git(["show", f"{ref}:{rel_path}"], repo, timeout_s=timeout_s)
    except GitError:
        return None
