"""The report commit (docs/contract.md §5, §11): made after the suite, outside anything
it touched, pushed to the feature branch only (never main, never forced). Never raises.

The job's worktree, its index and HEAD are never used: the suite may have changed any
of them, committed untested code, or planted config, filters, hooks, attributes or an
fsmonitor in every git dir it could write. git fast-import writes the commit into an
`IsolatedGit` that borrows only the mirror's objects, and its only parent is the tested
commit: the branch never receives a commit the gate did not test. Whatever the branch
ships at the report path (file, symlink, submodule, directory, or a file or link in
place of a parent directory) is replaced by the rendered text as a regular file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from worker.errors import GitError
from worker.git.credentials import Origin
from worker.git.isolated import IsolatedGit

logger = logging.getLogger("testgate.publish")

PROTECTED_BRANCHES = frozenset({"main", "master"})
_HEX = re.compile(r"[0-9a-f]+")
# The report path is ours (`docs/work-items/<id>/13-test-report.md`): plain names only,
# so no pathspec magic, glob or `..` can widen what is looked up or removed.
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


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
    origin: Origin,
    object_format: str,
    branch: str,
    message: str,
    identity: GitIdentity,
    timeout_s: float = 120,
) -> PublishResult:
    """Commit `text` at `rel_path` on top of `tested_commit` (objects from `mirror`,
    hashed by `object_format`) and push it to `branch` of `origin`; `pushed` only if
    ls-remote then agrees."""
    refusal = _refusal(tested_commit, rel_path, branch)
    if refusal:
        logger.error("report for %s not published: %s", branch, refusal)
        return PublishResult(False, False, None, f"refused: {refusal}")
    # The push's HOME (the commit's identity is written into it, not read by git).
    identity.home.mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(identity.home), **origin.env()}
    try:
        with IsolatedGit(mirror, object_format=object_format, env=env, timeout_s=timeout_s) as git:
            if len(tested_commit) != git.name_length:
                refusal = f"tested commit {tested_commit!r} is not a full {object_format} name"
                logger.error("report for %s not published: %s", branch, refusal)
                return PublishResult(False, False, None, f"refused: {refusal}")
            try:
                commit = _report_commit(git, tested_commit, rel_path, text, message, identity)
            except GitError as exc:
                logger.error("report commit on %s failed: %s", tested_commit, exc)
                return PublishResult(False, False, None, f"report not committed: {exc}")
            return _push(git, origin, branch, tested_commit, commit)
    except (GitError, OSError) as exc:
        logger.error("no private git dir for the report of %s: %s", tested_commit, exc)
        return PublishResult(False, False, None, f"report not committed: {exc}")


def _refusal(tested_commit: str, rel_path: str, branch: str) -> str | None:
    if not _HEX.fullmatch(tested_commit):
        return f"tested commit {tested_commit!r} is not an object name"
    if not all(_PATH_PART.fullmatch(p) and p.lower() != ".git" for p in rel_path.split("/")):
        return f"report path {rel_path!r} is not a plain relative path"
    if branch in PROTECTED_BRANCHES:
        return f"never push to {branch}"
    if not branch or branch.startswith(("-", "+")) or ":" in branch or branch != branch.strip():
        return f"branch {branch!r} is not a plain branch name"
    return None


def _report_commit(
    git: IsolatedGit, tested: str, rel_path: str, text: str, message: str, who: GitIdentity
) -> str:
    """The report commit's name; the tested commit itself when its tree already holds
    exactly this report (a redelivery of the same verdict makes no second commit).

    Every object read on the way to the report path, and the new blob, are checked to
    hash to their names: git reads the mirror's objects without re-hashing them, so one
    rewritten there would otherwise be built upon."""
    if any(c in f"{who.name}{who.email}" for c in "<>\n\0"):
        raise GitError(f"an identity git would refuse: {who.name!r} <{who.email!r}>")
    # Bytes as they are: no attribute, filter or eol conversion applies in fast-import.
    data = text.encode("utf-8", "replace")
    body = (message.rstrip("\n") + "\n").encode("utf-8", "surrogateescape")
    stream = b"".join(
        (
            f"commit refs/heads/report\nmark :1\ncommitter {who.name} <{who.email}> now\n".encode(),
            b"data %d\n%s" % (len(body), body),
            f"from {tested}\nM 100644 inline {rel_path}\n".encode(),
            b"data %d\n%s\n" % (len(data), data),
            b"get-mark :1\ndone\n",
        )
    )
    commit = git.run(["fast-import", "--quiet", "--done", "--date-format=now"], stdin=stream)
    dirs = rel_path.split("/")[:-1]
    names = [tested, f"{tested}^{{tree}}"]
    names += [f"{tested}:{'/'.join(dirs[: i + 1])}" for i in range(len(dirs))]
    names += [f"{commit}^{{tree}}", f"{commit}:{rel_path}"]
    found = git.verified_objects(names)
    if found[0] is None or found[0][:2] != (tested, "commit"):
        raise GitError(f"the mirror has no commit {tested}")
    if found[1] is None:
        # git resolves `^{tree}` only through an object that hashes to its name.
        raise GitError(f"the tree of {tested} does not hash to its name: the mirror was altered")
    report = found[-1]
    if report is None or report[1:] != ("blob", data):
        raise GitError(f"the new tree does not hold the report at {rel_path}")
    new_tree = found[-2]
    if new_tree is not None and new_tree[0] == found[1][0]:
        return tested
    return commit


def _push(git: IsolatedGit, origin: Origin, branch: str, tested: str, commit: str) -> PublishResult:
    ref = f"refs/heads/{branch}"
    push_error: GitError | None = None
    try:
        # No --force and no '+': if the branch moved past the tested commit, git rejects.
        git.run([*origin.args(), "push", "--quiet", "--no-verify", origin.url, f"{commit}:{ref}"])
    except GitError as exc:
        push_error = exc
    try:
        tip = _remote_tip(git, origin, ref)
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


def _remote_tip(git: IsolatedGit, origin: Origin, ref: str) -> str | None:
    # ls-remote matches patterns by their tail; only the exact ref name counts.
    listed = git.run([*origin.args(), "ls-remote", origin.url, ref])
    tips = [line.split("\t")[0] for line in listed.splitlines() if line.endswith(f"\t{ref}")]
    return tips[0] if len(tips) == 1 else None
