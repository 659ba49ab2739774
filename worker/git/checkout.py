"""Per-job checkouts (docs/contract.md §4): a bare mirror per repo, a throw-away worktree per job.

The mirror is cloned once from `url_template` and fetched per job (only when the
commit to test is not already there). Its config keeps the origin's URL without
credentials (worker/git/credentials.py). Each job gets its own `git worktree`,
removed when the job ends, whatever the outcome; two jobs never share a directory.

Many jobs of one repo start at the same moment (a fleet's pool processes, a sharded
job's shards), so little here takes a lock that all of them wait for:

- a fetch holds the repo's lock shared and its branch's lock exclusive: fetches of
  different branches run at once (each updates only its own ref; auto gc is off);
- `git worktree add --no-checkout` holds the repo's lock exclusive for the few ms it
  takes (a fetch fails on a record git has half made); the files are checked out after;
- cloning the mirror and its housekeeping (`git gc --auto` and `git worktree prune`,
  when git's own loose object and pack counts call for it) hold the repo's lock
  exclusive.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from worker.errors import CheckoutError, GitError
from worker.git.command import run_git
from worker.git.credentials import Origin, split_origin

logger = logging.getLogger("testgate.checkout")

# git's own defaults for `gc --auto`: about 6700 loose objects (sampled in objects/17,
# so 27 there) or 50 packs.
_GC_LOOSE_IN_ONE_DIR = 27
_GC_PACKS = 50
_NO_HOUSEKEEPING = ("-c", "gc.auto=0", "-c", "maintenance.auto=false")
_NO_HOOKS = ["-c", "core.hooksPath=/dev/null"]


@dataclass(frozen=True)
class Checkout:
    repo: str
    branch: str
    commit: str  # the full object name checked out (the job's commit, or the branch tip)
    path: Path  # the job's private worktree
    mirror: Path  # the repo's bare mirror, whose objects the worktree uses
    origin: Origin  # where the mirror fetches from and reports are pushed to
    object_format: str  # the mirror's hash: "sha1" or "sha256", as git names it


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
    jobs.mkdir(parents=True, exist_ok=True)
    origin = split_origin(url_template.format(repo=repo))
    if job_dir is None:
        job_dir = Path(tempfile.mkdtemp(prefix=f"{repo}-", dir=jobs))
        removed_dir = job_dir  # ours: removed with the worktree
    else:
        removed_dir = job_dir / "src"
    worktree = job_dir / "src"
    added = False
    try:
        fetched = fetch(
            repo, branch, commit, workdir=workdir, origin=origin, git_timeout_s=git_timeout_s
        )
        sha = fetched.commit
        _add_worktree(mirror, worktree, sha, git_timeout_s)
        added = True
        reset = [*_NO_HOOKS, "reset", "--hard", "--quiet"]
        _git(worktree, "checkout of the files", reset, git_timeout_s)
    except CheckoutError:
        _remove(mirror, worktree if added else None, removed_dir, git_timeout_s)
        raise
    logger.info("checked out %s@%s (%s) in %s", repo, branch, sha, worktree)
    try:
        yield Checkout(repo, branch, sha, worktree, mirror, origin, fetched.object_format)
    finally:
        _remove(mirror, worktree, removed_dir, git_timeout_s)


@dataclass(frozen=True)
class Fetched:
    mirror: Path  # the repo's bare mirror, holding the commit
    commit: str  # its full object name
    object_format: str  # "sha1" or "sha256", as git names it


def fetch(
    repo: str,
    branch: str,
    commit: str | None,
    *,
    workdir: Path,
    origin: Origin,
    git_timeout_s: float = 300,
) -> Fetched:
    """Make sure the mirror of `repo` holds `commit` (fetched with `branch` only when it
    does not), or the tip of `branch`; no worktree. Raises CheckoutError."""
    mirror = mirror_path(workdir, repo)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    _ensure_mirror(mirror, origin, git_timeout_s)
    known = _resolved(mirror, f"{commit}^{{commit}}", git_timeout_s) if commit else None
    object_format, sha = known or _fetched(mirror, branch, commit, origin, git_timeout_s)
    return Fetched(mirror, sha, object_format)


def merge_base(co: Checkout, base_branch: str, *, git_timeout_s: float = 300) -> str:
    """The merge base of the checked-out commit with origin's `base_branch`, fetched
    first so a stale mirror does not pick an old base. Raises CheckoutError."""
    ref = _fetch_branch(co.mirror, base_branch, co.origin, git_timeout_s)
    return _git(co.mirror, "merge-base", ["merge-base", co.commit, ref], git_timeout_s)


def forget_stored_urls(workdir: Path) -> None:
    """Drop the origin's URL from every mirror's config. Fetches and pushes name the URL
    themselves, and a mirror cloned before credentials were kept out of files holds
    them there, in a suite's reach. Failures are only logged."""
    key = "remote.origin.url"
    for mirror in sorted((workdir / "mirrors").glob("*.git")):
        try:
            run_git(["config", "--get-all", key], mirror, timeout_s=30)
        except GitError:
            continue  # none stored
        try:
            run_git(["config", "--unset-all", key], mirror, timeout_s=30)
        except GitError as exc:
            logger.warning("the origin's URL stays in %s: %s", mirror, exc)


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


def _ensure_mirror(mirror: Path, origin: Origin, timeout_s: float) -> None:
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
            clone = ["clone", "--bare", "--quiet", "--", origin.url, str(staging)]
            _git(mirror.parent, "clone", [*origin.args(), *clone], timeout_s, origin.env())
            staging.rename(mirror)
        except (CheckoutError, OSError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, CheckoutError):
                raise
            raise CheckoutError(f"cannot install mirror {mirror}: {exc}") from exc
    logger.info("cloned mirror %s from %s", mirror, origin.url)


def _fetched(
    mirror: Path, branch: str, commit: str | None, origin: Origin, timeout_s: float
) -> tuple[str, str]:
    """The object format and the commit to test once the branch is fetched: `commit`,
    or the branch's new tip."""
    ref = _fetch_branch(mirror, branch, origin, timeout_s)
    found = _resolved(mirror, f"{commit or ref}^{{commit}}", timeout_s)
    if found is None:
        raise CheckoutError(f"{mirror.stem}: commit {commit or ref} not found on origin")
    return found


def _fetch_branch(mirror: Path, branch: str, origin: Origin, timeout_s: float) -> str:
    """Fetch origin's `branch` into the same ref of the mirror; the ref's name. By URL,
    never by the remote's name: the mirror's config is not where the URL comes from."""
    ref = f"refs/heads/{branch}"
    locks = mirror / "testgate-locks"
    try:
        locks.mkdir(exist_ok=True)
    except OSError as exc:
        raise CheckoutError(f"{mirror.stem}: no lock for fetching {branch!r}: {exc}") from exc
    branch_lock = locks / f"{hashlib.sha256(ref.encode()).hexdigest()[:24]}.lock"
    args = [*_NO_HOUSEKEEPING, *origin.args(), "fetch", "--quiet", "--no-tags"]
    args += ["--no-write-fetch-head", origin.url, f"+{ref}:{ref}"]
    with _locked(_repo_lock(mirror), shared=True), _locked(branch_lock):
        try:
            run_git(args, mirror, env=origin.env(), timeout_s=timeout_s)
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
            # Records of worktrees whose job died with its process (gc keeps them for
            # months); no `worktree add` runs meanwhile, so none is taken half made.
            run_git(["worktree", "prune"], mirror, timeout_s=timeout_s)
        except GitError as exc:
            logger.warning("git gc --auto in %s failed: %s", mirror, exc)


def _resolved(mirror: Path, rev: str, timeout_s: float) -> tuple[str, str] | None:
    """The mirror's object format and the full name `rev` resolves to, or None."""
    try:
        out = run_git(
            ["rev-parse", "--show-object-format", "--verify", "--quiet", "--end-of-options", rev],
            mirror,
            timeout_s=timeout_s,
        )
    except GitError:
        return None
    object_format, _, sha = out.partition("\n")
    return object_format, sha.strip()


def _add_worktree(mirror: Path, worktree: Path, sha: str, timeout_s: float) -> None:
    """Register `worktree` as a worktree of `mirror`, HEAD detached at `sha`, no files.

    While git makes a worktree's record its HEAD is the null id, and a fetch that
    reads it then fails ("bad object worktrees/<name>/HEAD"): the record is made
    under the repo's lock held exclusive (a few ms: the files are checked out after).
    --force: a slot reused after its process died finds its path registered (and
    missing); that stale record goes."""
    worktree.parent.mkdir(parents=True, exist_ok=True)
    add = ["worktree", "add", "--force", "--detach", "--no-checkout", "--quiet"]
    with _locked(_repo_lock(mirror)):
        _git(mirror, "worktree add", [*add, str(worktree), sha], timeout_s)


def _remove(mirror: Path, worktree: Path | None, job_dir: Path, timeout_s: float) -> None:
    """Best effort, never raises: a leftover directory must not turn into a verdict.
    The files go first (git need not read what the suite left in them), then the
    worktree's record, by git, which finds it by path."""
    shutil.rmtree(job_dir, ignore_errors=True)
    if job_dir.exists():
        logger.error("cleanup of %s left files behind", job_dir)
    if worktree is None:
        return
    try:
        run_git(["worktree", "remove", "--force", str(worktree)], mirror, timeout_s=timeout_s)
    except GitError as exc:
        logger.error("the worktree record of %s is left behind: %s", worktree, exc)


def _git(
    cwd: Path, step: str, args: list[str], timeout_s: float, env: dict[str, str] | None = None
) -> str:
    try:
        return run_git(args, cwd, env=env, timeout_s=timeout_s)
    except GitError as exc:
        raise CheckoutError(f"{cwd.name}: {step} failed: {exc}") from exc
