"""Files and diffs as a commit holds them, read from the mirror's objects.

What a worker reads about a tested commit after its suite ran must not come from the
worktree: the suite could rewrite any file in it and replace its `.git` (garbage, none,
or a repository of its own whose replace refs make one commit read as another). So
these reads go through an `IsolatedGit` over the mirror: objects by hash, no config,
hooks or replace refs but the worker's own, and each blob checked to hash to its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from worker.errors import GitError
from worker.git.isolated import IsolatedGit

_REGULAR_FILE_MODES = frozenset({"100644", "100755"})


def committed_diff(
    git: IsolatedGit, old: str, new: str, *, options: Sequence[str], paths: Sequence[str]
) -> str:
    """`git diff <options> old new -- <paths>` between two commits' trees (paths as
    git's globs), unquoted non-ASCII names. GitError if git fails."""
    trees = (f"{old}^{{commit}}", f"{new}^{{commit}}")
    args = ["-c", "core.quotepath=off", "diff", *options, *trees, "--", *paths]
    return git.run(args, strip=False)


def committed_texts(
    git: IsolatedGit, commit: str, paths: Iterable[str | None], *, max_bytes: int
) -> dict[str, str]:
    """The text of each of `paths` that is a regular file of `commit` (not a symlink, a
    submodule or a directory) of at most `max_bytes`; paths it lacks are left out.
    GitError if git fails or a blob does not hash to its name."""
    wanted = sorted({p for p in paths if p})
    if not wanted:
        return {}
    blobs = {
        path: sha
        for path, (mode, sha, size) in _entries(git, commit, wanted).items()
        if mode in _REGULAR_FILE_MODES and size <= max_bytes
    }
    contents = _blobs(git, sorted(set(blobs.values())))
    return {path: contents[sha].decode("utf-8", "replace") for path, sha in blobs.items()}


def _entries(
    git: IsolatedGit, commit: str, paths: Sequence[str]
) -> dict[str, tuple[str, str, int]]:
    """path -> (mode, blob sha, size) for each of `paths` that `commit` holds as a blob."""
    listing = git.run(
        ["--literal-pathspecs", "ls-tree", "-z", "--long", "--full-tree", commit, "--", *paths],
        strip=False,
    )
    wanted = set(paths)
    entries: dict[str, tuple[str, str, int]] = {}
    for record in filter(None, listing.split("\0")):
        meta, _, path = record.partition("\t")
        fields = meta.split()
        if len(fields) != 4:
            raise GitError(f"unexpected ls-tree output: {record[:200]!r}")
        mode, kind, sha, size = fields
        if kind == "blob" and path in wanted and size.isdigit():
            entries[path] = (mode, sha, int(size))
    return entries


def _blobs(git: IsolatedGit, shas: Sequence[str]) -> dict[str, bytes]:
    """sha -> content of each blob, by one `cat-file --batch`, each checked by its hash."""
    contents: dict[str, bytes] = {}
    for sha, found in zip(shas, git.verified_objects(list(shas)), strict=True):
        if found is None or found[:2] != (sha, "blob"):
            raise GitError(f"the mirror has no blob {sha}")
        contents[sha] = found[2]
    return contents
