"""The hidden tests of a contract (docs/contract.md §14): tests from another repository, which the
agent cannot see, run against the branch's code in the trusted setting.

They are read from that repository's mirror (fetched through the URL template like any
repo's) and written only into a fresh checkout of the tested commit, under a directory
of the gate's, after its setup and the trusted files: never into the branch, its git
or the worktree its own suite ran in. What the report may say of them is decided in
worker/review/trusted_files.py (`hidden_objection`): never their source or output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from worker.contracts import HiddenTests
from worker.errors import CheckoutError, GitError
from worker.git.checkout import fetch
from worker.git.committed import committed_files, committed_tree
from worker.git.credentials import split_origin
from worker.git.isolated import IsolatedGit
from worker.pipeline.trusted import remove_entry, write_file
from worker.settings import Settings
from worker.suite.run import SuiteRun

HIDDEN_DIR = ".testgate-hidden"


@dataclass(frozen=True)
class HiddenRun:
    suite: SuiteRun
    texts: dict[str, bytes]  # the hidden files by their path in the worktree
    root: Path


def hidden_files(hidden: HiddenTests, settings: Settings) -> dict[str, tuple[str, bytes]]:
    """The hidden repository's files under its path at the tip of its ref: path ->
    (mode, content). Raises CheckoutError (a fetch failed, objects unreadable, none)."""
    prefix = hidden.path.strip("/")
    origin = split_origin(settings.git_url_template.format(repo=hidden.repo))
    timeout_s = settings.git_timeout_s
    fetched = fetch(
        hidden.repo,
        hidden.ref,
        None,
        workdir=settings.workdir_path,
        origin=origin,
        git_timeout_s=timeout_s,
    )
    try:
        with IsolatedGit(
            fetched.mirror, timeout_s=timeout_s, object_format=fetched.object_format
        ) as git:
            tree = committed_tree(git, fetched.commit)
            under = {p: e for p, e in tree.items() if p == prefix or p.startswith(prefix + "/")}
            files = committed_files(git, under)
    except GitError as exc:
        raise CheckoutError(f"reading the hidden tests of {hidden.repo}: {exc}") from exc
    if not files:
        raise CheckoutError(f"the hidden repo {hidden.repo} has no files under {hidden.path}")
    return files


def place_hidden(worktree: Path, files: dict[str, tuple[str, bytes]], hidden: HiddenTests) -> str:
    """Write the hidden files under the gate's directory of `worktree` (whatever the
    branch has there goes first); the pytest target that names them."""
    root = worktree.resolve()
    remove_entry(root / HIDDEN_DIR)
    for path, (mode, content) in files.items():
        write_file(root, f"{HIDDEN_DIR}/{path}", content, mode)
    return f"{HIDDEN_DIR}/{hidden.path.strip('/')}"
