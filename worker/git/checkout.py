"""Per-job checkouts (docs/contract.md §4): a bare mirror per repo, a throw-away worktree per job.

The mirror is cloned once from `url_template` and fetched per job (only when the
commit to test is not already there). Each job gets its own `git worktree`, removed
when the job ends, whatever the outcome; two jobs never share a directory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from worker.errors import CheckoutError, GitError
from worker.git.command import run_git

logger = logging.getLogger("testgate.checkout")


@dataclass(frozen=True)
class Checkout:
    repo: str
    branch: str
    commit: str  # the 40-hex SHA checked out (the job's commit, or the branch tip)
    path: Path  # the job's private worktree
    mirror: Path  # the repo's bare mirror, whose objects the worktree uses
    origin_url: str  # where the mirror fetches from and reports are pushed to


def mirror_path(workdir: Path, repo: str) -> Path:
    """The bare mirror of `repo` under `workdir`: every worktree's git directory."""
    return workdir / "mirrors" / f"{repo}.git"


@contextmanager
def checkout(
    repo: str,
    branch: str,
    commit: str | None,
    *,
    workdir: Path,
    url_template: str,
    git_timeout_s: float = 300,
    job_dir: Path | None = None,
) -> Iterator[Checkout]:
    """Yield a private worktree of `repo` at `commit` (or the tip of `branch`).

    The worktree is `job_dir/src` when a job directory is given (a pool process's slot,
    worker/containment/slot.py), else in a fresh directory under `workdir/jobs`.
    Raises CheckoutError (with repo, step and git's message) if it cannot be made.
    The worktree is removed on exit, also when the block raises (the job directory it
    was given is left to its owner).
    """
    mirror = mirror_path(workdir, repo)
    mirrors = mirror.parent
    jobs = workdir / "jobs"
    mirrors.mkdir(parents=True, exist_ok=True)
    jobs.mkdir(parents=True, exist_ok=True)
    mirror = mirror_path(workdir, repo)
    origin_url = url_template.format(repo=repo)
    lock_path = mirrors / f"{repo}.lock"
    if job_dir is None:
        job_dir = Path(tempfile.mkdtemp(prefix=f"{repo}-", dir=jobs))
        removed_dir = job_dir  # ours: removed with the worktree
    else:
        removed_dir = job_dir / "src"
    worktree = job_dir / "src"
    # The lock, which every job's checkout of this repo takes in turn, is held only to
    # register the worktree: concurrent `git worktree add`s read each other's half-made
    # records and fail. A commit the mirror already has is looked up before it (objects
    # are only ever added) and the files are written after it, into the worktree's own
    # index: many shards of one commit start at the same moment.
    sha = commit if commit and _mirror_has(mirror, commit, git_timeout_s) else None
    try:
        with _locked(lock_path):
            if sha is None:
                _ensure_mirror(mirror, origin_url, git_timeout_s)
                sha = _resolve(mirror, branch, commit, git_timeout_s)
            _git(
                mirror,
                "worktree add",
                ["worktree", "add", "--no-checkout", "--detach", "--quiet", str(worktree), sha],
                git_timeout_s,
            )
    except CheckoutError:
        shutil.rmtree(removed_dir, ignore_errors=True)
        raise
    try:
        _git(worktree, "checkout of the files", ["reset", "--hard", "--quiet"], git_timeout_s)
    except CheckoutError:
        _remove_worktree(mirror, lock_path, removed_dir, worktree, git_timeout_s)
        raise
    logger.info("checked out %s@%s (%s) in %s", repo, branch, sha, worktree)
    try:
        yield Checkout(
            repo=repo,
            branch=branch,
            commit=sha,
            path=worktree,
            mirror=mirror,
            origin_url=origin_url,
        )
    finally:
        _remove_worktree(mirror, lock_path, removed_dir, worktree, git_timeout_s)


def merge_base(
    repo: str, commit: str, base_branch: str, *, workdir: Path, git_timeout_s: float = 300
) -> str:
    """The merge base of `commit` (already in the mirror) with origin's `base_branch`,
    fetched first so a stale mirror does not pick an old base. Raises CheckoutError."""
    mirror = mirror_path(workdir, repo)
    ref = f"refs/heads/{base_branch}"
    with _locked(workdir / "mirrors" / f"{repo}.lock"):
        _git(
            mirror,
            f"fetch of {base_branch!r}",
            ["fetch", "--quiet", "--no-tags", "origin", f"+{ref}:{ref}"],
            git_timeout_s,
        )
        return _git(mirror, "merge-base", ["merge-base", commit, ref], git_timeout_s)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Serialise mutations of one mirror across threads and processes (flock is per
    open file description, so two threads opening the file exclude each other too)."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_mirror(mirror: Path, url: str, timeout_s: float) -> None:
    if (mirror / "HEAD").is_file():
        return
    if mirror.exists():
        # Left by a clone that died before the rename below: never trust it.
        logger.warning("removing incomplete mirror %s", mirror)
        shutil.rmtree(mirror, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{mirror.name}-", dir=mirror.parent))
    try:
        _git(
            mirror.parent,
            "clone",
            ["clone", "--bare", "--quiet", "--", url, str(staging)],
            timeout_s,
        )
        _git(
            staging,
            "config",
            ["config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*"],
            timeout_s,
        )
        os.rename(staging, mirror)
    except (CheckoutError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, CheckoutError):
            raise
        raise CheckoutError(f"cannot install mirror {mirror}: {exc}") from exc
    logger.info("cloned mirror %s from %s", mirror, url)


def _resolve(mirror: Path, branch: str, commit: str | None, timeout_s: float) -> str:
    """The SHA to test, fetching from origin only when it is not already here."""
    if commit and _has_commit(mirror, commit, timeout_s):
        return commit
    try:
        run_git(
            [
                "fetch",
                "--quiet",
                "--no-tags",
                "origin",
                f"+refs/heads/{branch}:refs/heads/{branch}",
            ],
            mirror,
            timeout_s=timeout_s,
        )
    except GitError as exc:
        if "couldn't find remote ref" in str(exc):
            raise CheckoutError(f"{mirror.stem}: branch {branch!r} not found on origin") from exc
        raise CheckoutError(f"{mirror.stem}: fetch of {branch!r} failed: {exc}") from exc
    if commit:
        if not _has_commit(mirror, commit, timeout_s):
            raise CheckoutError(f"{mirror.stem}: commit {commit} not found on origin")
        return commit
    return _git(
        mirror,
        "rev-parse",
        ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"],
        timeout_s,
    )


def _mirror_has(mirror: Path, commit: str, timeout_s: float) -> bool:
    return (mirror / "HEAD").is_file() and _has_commit(mirror, commit, timeout_s)


def _has_commit(mirror: Path, commit: str, timeout_s: float) -> bool:
    try:
        run_git(["cat-file", "-e", f"{commit}^{{commit}}"], mirror, timeout_s=timeout_s)
        return True
    except GitError:
        return False


def _remove_worktree(
    mirror: Path, lock_path: Path, job_dir: Path, worktree: Path, timeout_s: float
) -> None:
    """Best effort, never raises: a leftover directory must not turn into a verdict."""
    try:
        with _locked(lock_path):
            try:
                run_git(
                    ["worktree", "remove", "--force", str(worktree)], mirror, timeout_s=timeout_s
                )
                removed = True
            except GitError as exc:
                logger.warning("git worktree remove %s failed: %s", worktree, exc)
                removed = False
            shutil.rmtree(job_dir, ignore_errors=True)
            if not removed:  # a successful remove drops the mirror's record itself
                try:
                    run_git(["worktree", "prune"], mirror, timeout_s=timeout_s)
                except GitError as exc:
                    logger.warning("git worktree prune in %s failed: %s", mirror, exc)
    except OSError as exc:
        logger.error("cleanup of %s failed: %s", job_dir, exc)
        shutil.rmtree(job_dir, ignore_errors=True)


def _git(cwd: Path, step: str, args: list[str], timeout_s: float) -> str:
    try:
        return run_git(args, cwd, timeout_s=timeout_s)
    except GitError as exc:
        raise CheckoutError(f"{cwd.name}: {step} failed: {exc}") from exc
