"""Write the report into the worktree, commit it as the system actor, push it to
the feature branch (never main, never forced). Best-effort: never raises.

(Interface fixed; implementation to be filled in.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    raise NotImplementedError
