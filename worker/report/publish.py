"""The report commit (docs/contract.md §5, §11): made after the suite, outside anything it touched,
pushed to the feature branch only (never main, never forced). Best-effort: never raises.

The job's worktree, its index and HEAD are never used: the suite may have changed any
of them, committed untested code, or planted config, filters, hooks, attributes or an
fsmonitor in every git dir it could write. The commit is written into an `IsolatedGit`
that borrows only the mirror's objects, from the tested commit's trees (each checked to
hash to its name), and its only parent is that commit: the branch never receives a
commit the gate did not test. Whatever the branch ships at the report path (file,
symlink, submodule, directory, or a file or link in place of a parent directory) is
replaced by the rendered text as a regular file.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker.errors import GitError
from worker.git.isolated import IsolatedGit
from worker.git.objects import (
    FILE_MODE,
    TREE_MODE,
    TreeEntry,
    commit_content,
    identity_line,
    parse_tree,
    tree_content,
)

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
        with IsolatedGit(mirror, env=_home_env(identity), timeout_s=timeout_s) as git:
            try:
                commit = _report_commit(git, tested_commit, rel_path, text, message, identity)
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


def _report_commit(
    git: IsolatedGit, tested: str, rel_path: str, text: str, message: str, who: GitIdentity
) -> str:
    """The report commit's SHA; the tested commit itself when its tree already holds
    exactly this report (a redelivery of the same verdict makes no second commit).

    The new objects are written here (worker/git/objects.py); git then reads the new
    tree back, and it must hold exactly the report's blob at the report's path."""
    parts = rel_path.split("/")
    commit, trees = _read_the_way(git, tested, parts[:-1])
    first_line = commit.split(b"\n", 1)[0].decode("ascii", "replace")
    root = first_line.removeprefix("tree ")
    if not first_line.startswith("tree ") or not _SHA.fullmatch(root):
        raise GitError(f"{tested} is not a commit with a tree")
    # Bytes as they are: no attribute, filter or eol conversion can apply.
    blob = git.write_object("blob", text.encode("utf-8", "replace"))
    tree = _with_file(git, root, parts, blob, trees)
    found = _tree_entry(git, tree, rel_path)
    if found != (_REGULAR_FILE, blob):
        raise GitError(f"the new tree has {found} at {rel_path}, not the report")
    if tree == root:
        return tested
    now = time.time()
    signed = identity_line(who.name, who.email, int(now), _utc_offset_s(now))
    return git.write_object("commit", commit_content(tree, tested, signed, signed, message))


def _read_the_way(git: IsolatedGit, tested: str, dirs: list[str]) -> tuple[bytes, dict[str, bytes]]:
    """The tested commit's content and, by name, the trees from its root down to the
    report's directory as far as they exist: one `cat-file --batch` for all of them,
    each object checked to hash to its name (which `_with_file` then follows)."""
    names = [tested, f"{tested}^{{tree}}"]
    names += [f"{tested}:{'/'.join(dirs[: i + 1])}" for i in range(len(dirs))]
    found = git.verified_objects(names)
    if found[0] is None or found[0][:2] != (tested, "commit"):
        raise GitError(f"the mirror has no commit {tested}")
    trees = {sha: content for sha, kind, content in filter(None, found[1:]) if kind == "tree"}
    return found[0][2], trees


def _with_file(
    git: IsolatedGit, tree: str | None, parts: list[str], blob: str, read: Mapping[str, bytes]
) -> str:
    """The name of `tree` (None: an empty one) with the regular file `blob` at the path
    `parts`, written. Whatever stands there (file, symlink, submodule, directory) and
    any parent that is not a directory give way.

    Only the trees on the way to the report are read (from `read`, else from git),
    each checked to hash to its name, and rebuilt; every other entry keeps its name,
    and the origin already holds the real objects behind those names."""
    entries: dict[bytes, TreeEntry] = {}
    if tree is not None:
        entries = parse_tree(read[tree] if tree in read else git.verified_object(tree, "tree"))
    name = parts[0].encode()
    if len(parts) == 1:
        entries[name] = TreeEntry(FILE_MODE, name, blob)
    else:
        below = entries.get(name)
        subtree = below.sha if below is not None and below.is_tree else None
        rebuilt = _with_file(git, subtree, parts[1:], blob, read)
        entries[name] = TreeEntry(TREE_MODE, name, rebuilt)
    return git.write_object("tree", tree_content(entries.values()))


def _utc_offset_s(when: float) -> int:
    """The local zone's offset at `when`, as git puts it on a commit it makes."""
    return time.localtime(when).tm_gmtoff


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


def _home_env(identity: GitIdentity) -> dict[str, str]:
    """The push's HOME (the commit's identity is written into it, not read by git)."""
    identity.home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(identity.home)}
