"""Per-job checkouts: a bare mirror per repo, a throw-away worktree per job.

(Interface fixed; implementation to be filled in.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class CheckoutError(Exception):
    """The checkout could not be made: an infrastructure fault, never a code fault."""


@dataclass(frozen=True)
class Checkout:
    repo: str
    branch: str
    commit: str  # the 40-hex SHA checked out (the job's commit, or the branch tip)
    path: Path  # the job's private worktree


@contextmanager
def checkout(
    repo: str,
    branch: str,
    commit: str | None,
    *,
    workdir: Path,
    url_template: str,
    git_timeout_s: float = 300,
) -> Iterator[Checkout]:
    raise NotImplementedError
    yield
