"""Write the report into the worktree, commit it as the system actor, push it to
the feature branch (never main, never forced). Best-effort: never raises."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from worker.errors import GitError
from worker.git.command import run_git

logger = logging.getLogger("testgate.publish")

PROTECTED_BRANCHES = frozenset({"main", "master"})
# The branch comes from a coding agent: none of its hooks may run as the runner.
_NO_HOOKS = ["-c", "core.hooksPath=/dev/null"]


@dataclass(frozen=True)
class GitIdentity:
    name: str  # "test-runner"
    email: str  # "test-runner@<git_email_domain>"
    home: Path  # HOME for git


@dataclass(frozen=True)
class PublishResult:
    written: bool  # the report file is in the worktree
    pushed: bool  # the report commit reached the feature branch on origin
    report_commit: str | None  # SHA of the report commit, when one was made
    detail: str  # human-readable: what happened, or why it failed


def publish_report(
    worktree: Path,
    rel_path: str,
    text: str,
    *,
    branch: str,
    message: str,
    identity: GitIdentity,
    timeout_s: float = 120,
) -> PublishResult:
    """Overwrite `rel_path` with `text`, commit it, push HEAD to `branch` on origin."""
    root = worktree.resolve()
    target = (root / rel_path).resolve()
    if not target.is_relative_to(root) or target == root:
        logger.error("report path %r escapes the worktree %s", rel_path, root)
        return PublishResult(
            False, False, None, f"report path {rel_path!r} is outside the checkout"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        logger.error("report not written to %s: %s", target, exc)
        return PublishResult(False, False, None, f"report not written: {exc}")
    try:
        env = _identity_env(identity)
        commit = _commit(root, rel_path, message, env, timeout_s)
    except (GitError, OSError) as exc:
        logger.error("report commit in %s failed: %s", root, exc)
        return PublishResult(True, False, None, f"report written but not committed: {exc}")
    if branch in PROTECTED_BRANCHES:
        logger.error("refusing to push a report to %s", branch)
        return PublishResult(True, False, commit, f"refused: never push to {branch}")
    try:
        # No --force and no '+' refspec: if the branch moved, the push is rejected.
        run_git(
            [*_NO_HOOKS, "push", "--quiet", "--no-verify", "origin", f"HEAD:refs/heads/{branch}"],
            root,
            env=env,
            timeout_s=timeout_s,
        )
    except GitError as exc:
        logger.error("report commit %s not pushed to %s: %s", commit, branch, exc)
        return PublishResult(True, False, commit, f"committed but not pushed: {exc}")
    return PublishResult(True, True, commit, f"pushed {commit} to {branch}")


def _commit(root: Path, rel_path: str, message: str, env: dict[str, str], timeout_s: float) -> str:
    """Commit the report; if it is byte-identical to what HEAD has, commit nothing."""
    run_git([*_NO_HOOKS, "add", "--force", "--", rel_path], root, env=env, timeout_s=timeout_s)
    staged = run_git(
        ["diff", "--cached", "--name-only", "--", rel_path], root, env=env, timeout_s=timeout_s
    )
    if staged:
        run_git(
            [*_NO_HOOKS, "commit", "--quiet", "--no-verify", "-m", message, "--", rel_path],
            root,
            env=env,
            timeout_s=timeout_s,
        )
    return _detached_head(root) or run_git(
        ["rev-parse", "HEAD"], root, env=env, timeout_s=timeout_s
    )


def _detached_head(worktree: Path) -> str | None:
    """The worktree's HEAD read from its git dir (one git process fewer per job), or
    None when it is not a detached SHA there."""
    try:
        pointer = (worktree / ".git").read_text().strip()
        git_dir = Path(pointer.removeprefix("gitdir: ")) if pointer.startswith("gitdir: ") else None
        head = (git_dir / "HEAD").read_text().strip() if git_dir else ""
    except OSError:
        return None
    return head if re.fullmatch(r"[0-9a-f]{40}", head) else None


def _identity_env(identity: GitIdentity) -> dict[str, str]:
    identity.home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(identity.home),
        "GIT_AUTHOR_NAME": identity.name,
        "GIT_AUTHOR_EMAIL": identity.email,
        "GIT_COMMITTER_NAME": identity.name,
        "GIT_COMMITTER_EMAIL": identity.email,
    }
