"""The report commit (SPEC §4, §10): made after the suite, outside anything it touched,
pushed to the feature branch only (never main, never forced). Best-effort: never raises.

The job's worktree, its index and HEAD are never used: the suite may have changed any
of them, committed untested code, or planted config, filters, hooks, attributes or an
fsmonitor in every git dir it could write. The commit is built with plumbing in an
`IsolatedGit` that borrows only the mirror's objects, on a throw-away index read from
the tested commit, and its only parent is that commit: the branch never receives a
commit the gate did not test. Whatever the branch ships at the report path (file,
symlink, submodule, directory, or a file or link in place of a parent directory) is
replaced by the rendered text as a regular file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from worker.errors import GitError
from worker.git.isolated import IsolatedGit

logger = logging.getLogger("testgate.publish")

PROTECTED_BRANCHES = frozenset({"main", "master"})
_SHA = re.compile(r"[0-9a-f]{40}")
# The report path is ours (`docs/work-items/<id>/13-test-report.md`): plain names only,
# so no pathspec magic, glob or `..` can widen what is looked up or removed.
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_REGULAR_FILE = "100644"


@dataclass(frozen=True)
class GitIdentity:
    name: str  # "test-runner"
    email: str  # "test-runner@<git_email_domain>"
    home: Path  # HOME for git


@dataclass(frozen=True)
class PublishResult:
    written: bool  # a report commit holding the text exists (pushed or not)
    pushed: bool  # origin's branch was seen, after the push, at exactly that commit
    report_commit: str | None  # SHA of the report commit, when one was made
    detail: str  # human-readable: what happened, or why it failed


def publish_report(
    mirror: Path,
    tested_commit: str,
    rel_path: str,
    text: str,
    *,
    origin_url: str,
    branch: str,
    message: str,
    identity: GitIdentity,
    timeout_s: float = 120,
) -> PublishResult:
    """Commit `text` at `rel_path` on top of `tested_commit` (objects from `mirror`)
    and push it to `branch` on `origin_url`; `pushed` only if ls-remote then agrees."""
    refusal = _refusal(tested_commit, rel_path, branch)
    if refusal:
        logger.error("report for %s not published: %s", branch, refusal)
        return PublishResult(False, False, None, f"refused: {refusal}")
    try:
        with IsolatedGit(mirror, env=_identity_env(identity), timeout_s=timeout_s) as git:
            try:
                commit = _report_commit(git, tested_commit, rel_path, text, message)
            except GitError as exc:
                logger.error("report commit on %s failed: %s", tested_commit, exc)
                return PublishResult(False, False, None, f"report not committed: {exc}")
            return _push(git, origin_url, branch, tested_commit, commit)
    except (GitError, OSError) as exc:
        logger.error("no private git dir for the report of %s: %s", tested_commit, exc)
        return PublishResult(False, False, None, f"report not committed: {exc}")


def _refusal(tested_commit: str, rel_path: str, branch: str) -> str | None:
    if not _SHA.fullmatch(tested_commit):
        return f"tested commit {tested_commit!r} is not a full SHA"
    parts = rel_path.split("/")
    if not all(_PATH_PART.fullmatch(p) and p.lower() != ".git" for p in parts):
        return f"report path {rel_path!r} is not a plain relative path"
    if branch in PROTECTED_BRANCHES:
        return f"never push to {branch}"
    if not branch or branch.startswith(("-", "+")) or ":" in branch or branch != branch.strip():
        return f"branch {branch!r} is not a plain branch name"
    return None


def _report_commit(git: IsolatedGit, tested: str, rel_path: str, text: str, message: str) -> str:
    """The report commit's SHA; the tested commit itself when its tree already holds
    exactly this report (a redelivery of the same verdict makes no second commit)."""
    root, blocker = _inspect_tested(git, tested, rel_path)
    git.run(["read-tree", tested])
    _drop_conflicts(git, rel_path, blocker)
    # --stdin without --path: no attribute, no filter, no eol conversion can apply.
    data = text.encode("utf-8", "replace")
    blob = git.run(["hash-object", "-w", "--no-filters", "--stdin"], stdin=data)
    git.run(["update-index", "--add", "--cacheinfo", f"{_REGULAR_FILE},{blob},{rel_path}"])
    tree = git.run(["write-tree"])
    found = _tree_entry(git, tree, rel_path)
    if found != (_REGULAR_FILE, blob):
        raise GitError(f"the new tree has {found} at {rel_path}, not the report")
    if tree == root:
        return tested
    return git.run(["commit-tree", "--no-gpg-sign", "-p", tested, "-m", message, tree])


def _inspect_tested(git: IsolatedGit, tested: str, rel_path: str) -> tuple[str, str | None]:
    """The tested commit's root tree, and the first parent of the report path that is
    there but not a directory (None if there is none).

    The commit and every tree on the way to the report are checked to hash to their
    names: only these are rebuilt from their content. Every other subtree keeps its
    name (write-tree reuses the names read-tree recorded), and the origin already
    holds the real objects behind those names."""
    commit = git.verified_object(tested, "commit")
    first_line = commit.split(b"\n", 1)[0].decode("ascii", "replace")
    root = first_line.removeprefix("tree ")
    if not first_line.startswith("tree ") or not _SHA.fullmatch(root):
        raise GitError(f"{tested} is not a commit with a tree")
    parts = rel_path.split("/")[:-1]
    tree = root
    for depth, part in enumerate(parts, start=1):
        entry = _tree_entries(git.verified_object(tree, "tree")).get(part.encode())
        if entry is None:
            return root, None  # nothing here, so nothing deeper either
        if entry[0] != b"40000":
            return root, "/".join(parts[:depth])  # a file, link or submodule
        tree = entry[1]
    git.verified_object(tree, "tree")  # the report's own directory
    return root, None


def _tree_entries(raw: bytes) -> dict[bytes, tuple[bytes, str]]:
    """name -> (mode, sha) of a raw tree object (`<mode> <name>\\0<20-byte sha>`...)."""
    entries: dict[bytes, tuple[bytes, str]] = {}
    at = 0
    try:
        while at < len(raw):
            space = raw.index(b" ", at)
            nul = raw.index(b"\0", space)
            entries[raw[space + 1 : nul]] = (raw[at:space], raw[nul + 1 : nul + 21].hex())
            at = nul + 21
    except ValueError as exc:
        raise GitError(f"a malformed tree object: {exc}") from exc
    return entries


def _drop_conflicts(git: IsolatedGit, rel_path: str, blocker: str | None) -> None:
    """Remove from the index every entry that stands where the report goes: the
    non-directory `blocker` at a parent, the path itself (any mode), anything under it."""
    doomed = [blocker] if blocker else []
    listed = git.run(["ls-files", "-z", "--", f":(literal){rel_path}"], strip=False)
    doomed += [p for p in listed.split("\0") if p]
    if doomed:
        paths = "".join(f"{p}\0" for p in doomed).encode("utf-8", "surrogateescape")
        git.run(["update-index", "--force-remove", "-z", "--stdin"], stdin=paths)


def _tree_entry(git: IsolatedGit, treeish: str, path: str) -> tuple[str, str] | None:
    """(mode, sha) of the entry named exactly `path` in `treeish`, or None."""
    listed = git.run(["ls-tree", "-z", "--full-tree", treeish, "--", path], strip=False)
    for record in listed.split("\0"):
        meta, _, name = record.partition("\t")
        if name == path:
            mode, _, sha = meta.split(" ")
            return mode, sha
    return None


def _push(
    git: IsolatedGit, origin_url: str, branch: str, tested: str, commit: str
) -> PublishResult:
    ref = f"refs/heads/{branch}"
    push_error: GitError | None = None
    try:
        # No --force and no '+': if the branch moved past the tested commit, git rejects.
        git.run(["push", "--quiet", "--no-verify", origin_url, f"{commit}:{ref}"])
    except GitError as exc:
        push_error = exc
    try:
        tip = _remote_tip(git, origin_url, ref)
    except GitError as exc:
        logger.error("report commit %s: origin's %s unreadable: %s", commit, branch, exc)
        return PublishResult(True, False, commit, f"not pushed: cannot read {branch}: {exc}")
    if tip == commit:
        logger.info("report commit %s is the tip of %s on origin", commit, branch)
        return PublishResult(True, True, commit, f"pushed {commit} to {branch}")
    where = f"at {tip}" if tip else "absent"
    if push_error is not None:
        detail = (
            f"committed but not pushed: {branch} on origin is {where}, not the tested "
            f"commit {tested} or its report {commit}; never forced ({push_error})"
        )
    else:
        detail = f"not pushed: the push succeeded but {branch} on origin is {where}"
    logger.error("report commit %s: %s", commit, detail)
    return PublishResult(True, False, commit, detail)


def _remote_tip(git: IsolatedGit, origin_url: str, ref: str) -> str | None:
    # ls-remote matches patterns by their tail; only the exact ref name counts.
    listed = git.run(["ls-remote", origin_url, ref])
    tips = [line.split("\t")[0] for line in listed.splitlines() if line.endswith(f"\t{ref}")]
    return tips[0] if len(tips) == 1 else None


def _identity_env(identity: GitIdentity) -> dict[str, str]:
    identity.home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(identity.home),
        "GIT_AUTHOR_NAME": identity.name,
        "GIT_AUTHOR_EMAIL": identity.email,
        "GIT_COMMITTER_NAME": identity.name,
        "GIT_COMMITTER_EMAIL": identity.email,
    }
