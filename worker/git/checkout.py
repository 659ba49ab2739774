"""Per-job checkouts (docs/contract.md §4): a bare mirror per repo, a throw-away worktree per job.

The mirror is cloned once from `url_template` and fetched per job (only when the
commit to test is not already there). Each job gets its own git worktree, removed
when the job ends, whatever the outcome; two jobs never share a directory.

Many jobs of one repo start at the same moment (a fleet's pool processes, a sharded
job's shards), so little here takes a lock that all of them wait for:

- the worktree is registered in the mirror by writing its record (what `git worktree
  add` writes: `worktrees/<name>/{HEAD,commondir,gitdir}` and the worktree's `.git`
  file) under a name no other job has, made whole before it is moved into place; so
  no git process and no lock, and removing it is deleting two directories;
- a fetch holds the repo's lock shared and its branch's lock exclusive: fetches of
  different branches run at once (each updates only its own ref; auto gc is off);
- cloning the mirror and its housekeeping (`git gc --auto`, when git's own loose
  object and pack counts call for it) hold the repo's lock exclusive.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from worker.containment.untrusted_files import UntrustedDir
from worker.errors import CheckoutError, GitError
from worker.git.command import run_git

logger = logging.getLogger("testgate.checkout")

# git's own defaults for `gc --auto`: about 6700 loose objects (sampled in objects/17,
# so 27 there) or 50 packs.
_GC_LOOSE_IN_ONE_DIR = 27
_GC_PACKS = 50
_NO_HOUSEKEEPING = ("-c", "gc.auto=0", "-c", "maintenance.auto=false")
_MAX_GITFILE_BYTES = 4096


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
    jobs = workdir / "jobs"
    mirror.parent.mkdir(parents=True, exist_ok=True)
    jobs.mkdir(parents=True, exist_ok=True)
    origin_url = url_template.format(repo=repo)
    if job_dir is None:
        job_dir = Path(tempfile.mkdtemp(prefix=f"{repo}-", dir=jobs))
        removed_dir = job_dir  # ours: removed with the worktree
    else:
        removed_dir = job_dir / "src"
    worktree = job_dir / "src"
    record: Path | None = None
    try:
        _ensure_mirror(mirror, origin_url, git_timeout_s)
        known = commit if commit and _has_commit(mirror, commit, git_timeout_s) else None
        sha = known or _fetched(mirror, branch, commit, git_timeout_s)
        record = _register(mirror, worktree, sha)
        _git(worktree, "checkout of the files", ["reset", "--hard", "--quiet"], git_timeout_s)
    except CheckoutError:
        _remove(record, removed_dir)
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
        _remove(record, removed_dir)


def merge_base(
    repo: str, commit: str, base_branch: str, *, workdir: Path, git_timeout_s: float = 300
) -> str:
    """The merge base of `commit` (already in the mirror) with origin's `base_branch`,
    fetched first so a stale mirror does not pick an old base. Raises CheckoutError."""
    mirror = mirror_path(workdir, repo)
    ref = _fetch_branch(mirror, base_branch, git_timeout_s)
    return _git(mirror, "merge-base", ["merge-base", commit, ref], git_timeout_s)


def _repo_lock(mirror: Path) -> Path:
    return mirror.with_suffix(".lock")


@contextmanager
def _locked(lock_path: Path, *, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """flock `lock_path` across threads and processes (flock is per open file
    description, so two threads opening the file exclude each other too). Yields
    whether it is held: always when waiting, else only if no one else held it."""
    with lock_path.open("a") as handle:
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            fcntl.flock(handle, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_mirror(mirror: Path, url: str, timeout_s: float) -> None:
    if (mirror / "HEAD").is_file():
        return
    with _locked(_repo_lock(mirror)):
        if (mirror / "HEAD").is_file():
            return  # cloned by another job while this one waited
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


def _fetched(mirror: Path, branch: str, commit: str | None, timeout_s: float) -> str:
    """The SHA to test once the branch is fetched: `commit`, or the branch's new tip."""
    ref = _fetch_branch(mirror, branch, timeout_s)
    if commit:
        if not _has_commit(mirror, commit, timeout_s):
            raise CheckoutError(f"{mirror.stem}: commit {commit} not found on origin")
        return commit
    return _ref_value(mirror, ref) or _git(
        mirror,
        "rev-parse",
        ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        timeout_s,
    )


def _fetch_branch(mirror: Path, branch: str, timeout_s: float) -> str:
    """Fetch origin's `branch` into the same ref of the mirror; the ref's name."""
    ref = f"refs/heads/{branch}"
    locks = mirror / "testgate-locks"
    try:
        locks.mkdir(exist_ok=True)
    except OSError as exc:
        raise CheckoutError(f"{mirror.stem}: no lock for fetching {branch!r}: {exc}") from exc
    branch_lock = locks / f"{hashlib.sha256(ref.encode()).hexdigest()[:24]}.lock"
    with _locked(_repo_lock(mirror), shared=True), _locked(branch_lock):
        try:
            run_git(
                [
                    *_NO_HOUSEKEEPING,
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "origin",
                    f"+{ref}:{ref}",
                ],
                mirror,
                timeout_s=timeout_s,
            )
        except GitError as exc:
            if "couldn't find remote ref" in str(exc):
                raise CheckoutError(
                    f"{mirror.stem}: branch {branch!r} not found on origin"
                ) from exc
            raise CheckoutError(f"{mirror.stem}: fetch of {branch!r} failed: {exc}") from exc
    _housekeeping(mirror, timeout_s)
    return ref


def _housekeeping(mirror: Path, timeout_s: float) -> None:
    """`git gc --auto` when git's own thresholds are passed, if no fetch is running
    (never waited for: the next fetch tries again). Failures are only logged."""
    objects = mirror / "objects"
    try:
        loose = sum(1 for _ in (objects / "17").iterdir()) if (objects / "17").is_dir() else 0
        packs = sum(1 for p in (objects / "pack").iterdir() if p.suffix == ".pack")
    except OSError as exc:
        logger.warning("cannot look at %s for housekeeping: %s", objects, exc)
        return
    if loose <= _GC_LOOSE_IN_ONE_DIR and packs <= _GC_PACKS:
        return
    with _locked(_repo_lock(mirror), wait=False) as held:
        if not held:
            return
        logger.info("housekeeping of %s: %d loose in objects/17, %d packs", mirror, loose, packs)
        try:
            run_git(["gc", "--auto", "--quiet"], mirror, timeout_s=timeout_s)
            _drop_stale_records(mirror)
        except GitError as exc:
            logger.warning("git gc --auto in %s failed: %s", mirror, exc)


def _drop_stale_records(mirror: Path) -> None:
    """Remove the records of worktrees that no longer point back at them (left by a
    process that died mid-job in a slot since reused, which git's own prune keeps)."""
    records = Path(os.path.abspath(mirror)) / "worktrees"
    for record in records.iterdir() if records.is_dir() else ():
        if not _points_back(record):
            logger.info("removing the stale worktree record %s", record)
            shutil.rmtree(record, ignore_errors=True)


def _points_back(record: Path) -> bool:
    """Whether the worktree a record names has a `.git` that names the record. That
    `.git` is in a suite's reach (a running job's may be a FIFO, a link to /dev/zero):
    it is read as untrusted, up to a bound."""
    try:
        dot_git = Path((record / "gitdir").read_text(encoding="utf-8").strip())
        with UntrustedDir(dot_git.parent) as worktree:
            pointer = worktree.read_text(dot_git.name, _MAX_GITFILE_BYTES)
    except OSError:
        return False
    return pointer is not None and pointer.strip() == f"gitdir: {record}"


def _ref_value(mirror: Path, ref: str) -> str | None:
    """The SHA a ref of the mirror holds, read as git stores it (a loose ref file, else
    a line of packed-refs); None when it is neither (git is then asked)."""
    try:
        loose = (mirror / ref).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        loose = ""
    if _is_sha(loose):
        return loose
    try:
        packed = (mirror / "packed-refs").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _is_sha(sha):
            return sha
    return None


def _is_sha(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)


def _register(mirror: Path, worktree: Path, sha: str) -> Path:
    """Make `worktree` a git worktree of `mirror` with HEAD detached at `sha`, as `git
    worktree add --no-checkout --detach` would: its record under a fresh name, written
    whole elsewhere and moved into place only after the worktree's `.git` points at it
    (so no reader ever sees half of one). The record's path; CheckoutError if not."""
    mirror, worktree = Path(os.path.abspath(mirror)), Path(os.path.abspath(worktree))
    records = mirror / "worktrees"
    name = f"{worktree.parent.name}-{secrets.token_hex(6)}"
    record = records / name
    staging: Path | None = None
    try:
        records.mkdir(exist_ok=True)
        worktree.mkdir(parents=True)
        dot_git = worktree / ".git"
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=mirror))
        staging.chmod(0o755)  # as git makes it: the suite's own git reads it
        (staging / "HEAD").write_text(f"{sha}\n", encoding="ascii")
        (staging / "commondir").write_text("../..\n", encoding="ascii")
        (staging / "gitdir").write_text(f"{dot_git}\n", encoding="utf-8")
        dot_git.write_text(f"gitdir: {record}\n", encoding="utf-8")
        os.rename(staging, record)
    except OSError as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise CheckoutError(
            f"{mirror.stem}: cannot register the worktree {worktree}: {exc}"
        ) from exc
    return record


def _has_commit(mirror: Path, commit: str, timeout_s: float) -> bool:
    try:
        run_git(["cat-file", "-e", f"{commit}^{{commit}}"], mirror, timeout_s=timeout_s)
        return True
    except GitError:
        return False


def _remove(record: Path | None, job_dir: Path) -> None:
    """Best effort, never raises: a leftover directory must not turn into a verdict.
    The record goes first, so that git never sees a worktree whose files are half gone."""
    if record is not None:
        shutil.rmtree(record, ignore_errors=True)
    shutil.rmtree(job_dir, ignore_errors=True)
    if job_dir.exists() or (record is not None and record.exists()):
        logger.error("cleanup of %s (record %s) left files behind", job_dir, record)


def _git(cwd: Path, step: str, args: list[str], timeout_s: float) -> str:
    try:
        return run_git(args, cwd, timeout_s=timeout_s)
    except GitError as exc:
        raise CheckoutError(f"{cwd.name}: {step} failed: {exc}") from exc
