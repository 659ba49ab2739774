"""Running git: bounded in time, never prompting, failures as one exception type."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from worker.errors import GitError

_STDERR_LIMIT = 2000


def run_git(
    args: Sequence[str], cwd: Path, *, env: Mapping[str, str] | None = None, timeout_s: float = 300
) -> str:
    """Run `git <args>` in `cwd`; return stdout stripped, or raise GitError with stderr."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    full_env.update(env or {})
    done = git_process(args, cwd, full_env, timeout_s=timeout_s)
    return done.stdout.decode("utf-8", "surrogateescape").strip()


def git_process(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    timeout_s: float,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git <args>` with exactly `env`; the finished process, or GitError (timed out,
    not started, or a non-zero exit with the tail of its stderr)."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=dict(env),
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {git_verb(args)} timed out after {timeout_s:.0f}s") from exc
    except OSError as exc:
        raise GitError(f"git {git_verb(args)} could not be started: {exc}") from exc
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace").strip()[-_STDERR_LIMIT:]
        raise GitError(f"git {git_verb(args)} failed ({done.returncode}): {stderr}")
    return done


def git_verb(args: Sequence[str]) -> str:
    """The subcommand, skipping the `-c key=value` overrides in front of it."""
    rest = list(args)
    while len(rest) >= 2 and rest[0] == "-c":
        rest = rest[2:]
    return rest[0] if rest else "?"


def read_at_ref(repo: Path, ref: str, rel_path: str, timeout_s: float = 60) -> str | None:
    """The file `rel_path` as committed at `ref` in `repo`, or None if it is not there."""
    try:
        return run_git(["show", f"{ref}:{rel_path}"], repo, timeout_s=timeout_s)
    except GitError:
        return None
