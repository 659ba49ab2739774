"""Real git repositories for tests and benchmarks: a bare origin with `main` and a
feature branch. The `origin` fixture (tests/conftest.py) is `make_origin` under the
test's tmp_path."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

GIT_ENV = {
    "GIT_AUTHOR_NAME": "dev-agent",
    "GIT_AUTHOR_EMAIL": "dev@example.invalid",
    "GIT_COMMITTER_NAME": "dev-agent",
    "GIT_COMMITTER_EMAIL": "dev@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` and return its stripped stdout; raise on failure."""
    env = {**os.environ, **GIT_ENV, "HOME": str(cwd)}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {done.stderr}")
    return done.stdout.strip()


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_origin(
    root: Path,
    name: str,
    branch_files: Mapping[str, str],
    *,
    branch: str = "feature/x",
    main_files: Mapping[str, str] | None = None,
    object_format: str = "sha1",
) -> Path:
    """Create `root/<name>.git` (bare, hashed by `object_format`) whose `main` holds
    `main_files` and whose `branch` adds `branch_files` on top. Returns its path."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main", f"--object-format={object_format}")
    write_files(work, main_files or {"README.md": f"# {name}\n"})
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "main")
    git(work, "checkout", "-q", "-b", branch)
    write_files(work, branch_files)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"work on {branch}")
    bare = root / f"{name}.git"
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    return bare


class OriginFactory(Protocol):
    """The `origin` fixture: `make_origin` with the test's `tmp_path / "origins"` as root."""

    def __call__(
        self,
        name: str,
        branch_files: Mapping[str, str],
        *,
        branch: str = "feature/x",
        main_files: Mapping[str, str] | None = None,
        object_format: str = "sha1",
    ) -> Path: ...


def branch_tip(bare: Path, branch: str) -> str:
    return git(bare, "rev-parse", f"refs/heads/{branch}")


def show_file(bare: Path, ref: str, rel_path: str) -> str:
    return git(bare, "show", f"{ref}:{rel_path}")


def push_commit(bare: Path, branch: str, files: Mapping[str, str], message: str) -> str:
    """Add a commit with `files` on top of `branch` in `bare`; return its SHA."""
    work = bare.parent / f"{bare.stem}-push-{branch.replace('/', '_')}"
    if not work.exists():
        git(bare.parent, "clone", "-q", "-b", branch, str(bare), str(work))
    else:
        git(work, "pull", "-q", "--ff-only")
    write_files(work, files)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD")


def push_change(
    bare: Path,
    branch: str,
    change: Callable[[Path], None],
    message: str,
    *,
    then_in_index: Callable[[Path], None] | None = None,
) -> str:
    """Add a commit on top of `branch` in `bare` made by `change(worktree)` (which may
    write, delete or link anything), staged with `add -A`, then `then_in_index(worktree)`
    for what only the index can hold (a submodule entry); return its SHA."""
    work = bare.parent / f"{bare.stem}-change-{branch.replace('/', '_')}"
    if not work.exists():
        git(bare.parent, "clone", "-q", "-b", branch, str(bare), str(work))
    else:
        git(work, "pull", "-q", "--ff-only")
    change(work)
    git(work, "add", "-A")
    if then_in_index is not None:
        then_in_index(work)
    git(work, "commit", "-q", "-m", message)
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD")
