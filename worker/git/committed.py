"""Files and diffs as a commit holds them, read from the mirror's objects.

What a worker reads about a tested commit after its suite ran must not come from the
worktree: the suite could rewrite any file in it and replace its `.git` (garbage, none,
or a repository of its own whose replace refs make one commit read as another). So
these reads go through an `IsolatedGit` over the mirror: objects by hash, no config,
hooks or replace refs but the worker's own, and each blob checked to hash to its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from worker.errors import GitError
from worker.git.isolated import IsolatedGit

_REGULAR_FILE_MODES = frozenset({"100644", "100755"})


@dataclass(frozen=True)
class Entry:
    """One blob of a commit's tree."""

    mode: str
    sha: str
    size: int


def committed_diff(
    git: IsolatedGit, old: str, new: str, *, options: Sequence[str], paths: Sequence[str]
) -> str:
    """`git diff <options> old new -- <paths>` between two commits' trees (paths as
    git's globs), unquoted non-ASCII names. GitError if git fails."""
    trees = (f"{old}^{{commit}}", f"{new}^{{commit}}")
    args = ["-c", "core.quotepath=off", "diff", *options, *trees, "--", *paths]
    return git.run(args, strip=False)


def committed_tree(git: IsolatedGit, commit: str, paths: Sequence[str] = ()) -> dict[str, Entry]:
    """path -> entry of every blob of `commit`, or of those of `paths` it holds as blobs.
    GitError if git fails."""
    ls_tree = ["--literal-pathspecs", "ls-tree", "-r", "-z", "--long", "--full-tree"]
    listing = git.run([*ls_tree, f"{commit}^{{commit}}", "--", *paths], strip=False)
    wanted = set(paths)
    entries: dict[str, Entry] = {}
    for record in filter(None, listing.split("\0")):
        meta, _, path = record.partition("\t")
        fields = meta.split()
        if len(fields) != 4:
            raise GitError(f"unexpected ls-tree output: {record[:200]!r}")
        mode, kind, sha, size = fields
        if kind == "blob" and size.isdigit() and (not wanted or path in wanted):
            entries[path] = Entry(mode, sha, int(size))
    return entries


def committed_files(
    git: IsolatedGit, entries: Mapping[str, Entry], *, max_bytes: int | None = None
) -> dict[str, tuple[str, bytes]]:
    """path -> (mode, content) of the regular files among `entries` (not a symlink or a
    submodule) of at most `max_bytes`, read by one `cat-file --batch`, each blob checked
    to hash to its name. GitError if not."""
    regular = {
        path: entry
        for path, entry in entries.items()
        if entry.mode in _REGULAR_FILE_MODES and (max_bytes is None or entry.size <= max_bytes)
    }
    names = sorted({e.sha for e in regular.values()})
    blobs: dict[str, bytes] = {}
    for name, found in zip(names, git.verified_objects(names), strict=True):
        if found is None or found[:2] != (name, "blob"):
            raise GitError(f"the mirror has no blob {name}")
        blobs[name] = found[2]
    return {path: (entry.mode, blobs[entry.sha]) for path, entry in regular.items()}


def committed_texts(
    git: IsolatedGit, commit: str, paths: Iterable[str | None], *, max_bytes: int
) -> dict[str, str]:
    """The text of each of `paths` that is a regular file of `commit` of at most
    `max_bytes`; paths it lacks are left out. GitError as committed_files."""
    wanted = sorted({p for p in paths if p})
    if not wanted:
        return {}
    files = committed_files(git, committed_tree(git, commit, wanted), max_bytes=max_bytes)
    return {path: content.decode("utf-8", "replace") for path, (_, content) in files.items()}
