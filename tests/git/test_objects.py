"""The objects the gate writes itself are the ones git would write: each is compared with
what git's own plumbing makes of the same content."""

from __future__ import annotations

import os
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.errors import GitError
from worker.git.objects import (
    FILE_MODE,
    TREE_MODE,
    TreeEntry,
    commit_content,
    identity_line,
    loose_object,
    object_id,
    parse_tree,
    tree_content,
)

SHAS = ("0" * 39 + "1", "ab" * 20, "0123456789abcdef0123456789abcdef01234567")
MODES = {FILE_MODE: "blob", TREE_MODE: "tree", b"100755": "blob", b"120000": "blob"}


def git(repo: Path, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        input=stdin,
        capture_output=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return done.stdout.decode().strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("objects")
    git(path, "init", "-q", "--bare")
    return path


def git_tree(repo: Path, entries: list[TreeEntry]) -> str:
    """What `git mktree` names a tree of these entries (it sorts them itself)."""
    lines = "".join(
        f"{e.mode.decode()} {MODES[e.mode]} {e.sha}\t{e.name.decode()}\n" for e in entries
    )
    return git(repo, "mktree", "--missing", stdin=lines.encode())


@pytest.mark.parametrize("data", [b"", b"report\n", "ünïcode ✓\r\n".encode(), bytes(range(256))])
def test_a_blob_is_named_and_stored_as_git_does(repo: Path, data: bytes) -> None:
    sha, stored = loose_object("blob", data)
    assert sha == object_id("blob", data) == git(repo, "hash-object", "--stdin", stdin=data)
    assert zlib.decompress(stored) == f"blob {len(data)}\0".encode() + data


def test_a_directory_sorts_as_if_its_name_ended_in_a_slash(repo: Path) -> None:
    entries = [
        TreeEntry(TREE_MODE, b"docs", SHAS[0]),
        TreeEntry(FILE_MODE, b"docs.md", SHAS[1]),
        TreeEntry(FILE_MODE, b"docs-old", SHAS[2]),
        TreeEntry(FILE_MODE, b"docs0", SHAS[1]),
        TreeEntry(b"120000", b"Docs", SHAS[2]),
    ]
    content = tree_content(entries)
    assert object_id("tree", content) == git_tree(repo, entries)
    names = list(parse_tree(content))
    assert names == [b"Docs", b"docs-old", b"docs.md", b"docs", b"docs0"]


names = st.text(alphabet=st.sampled_from("ab-._0 Z~\u00e9"), min_size=1, max_size=6).filter(
    lambda name: name not in (".", "..")
)
entry_lists = st.dictionaries(
    names, st.tuples(st.sampled_from(list(MODES)), st.sampled_from(SHAS)), min_size=1, max_size=8
)


@settings(max_examples=60, deadline=None)
@given(entry_lists)
def test_any_tree_is_named_as_git_names_it_and_reads_back_whole(
    repo: Path, drawn: dict[str, tuple[bytes, str]]
) -> None:
    entries = [TreeEntry(mode, name.encode(), sha) for name, (mode, sha) in drawn.items()]
    content = tree_content(entries)
    assert object_id("tree", content) == git_tree(repo, entries)
    assert set(parse_tree(content).values()) == set(entries)


def test_a_cut_short_tree_is_refused() -> None:
    content = tree_content([TreeEntry(FILE_MODE, b"a", SHAS[0])])
    for broken in (content[:-1], content[:5], b"100644 a"):
        with pytest.raises(GitError, match="malformed tree"):
            parse_tree(broken)


def test_a_commit_is_the_one_commit_tree_writes(repo: Path) -> None:
    tree = git(repo, "hash-object", "-w", "-t", "tree", "--stdin", stdin=b"")
    parent = git(
        repo, "commit-tree", "-m", "root", tree, env=_fixed("a", "a@x", "1700000000 +0000")
    )
    who = identity_line("test-runner", "test-runner@example.org", 1700000123, -5 * 3600 - 1800)
    assert who.endswith(" 1700000123 -0530")
    ours = object_id("commit", commit_content(tree, parent, who, who, "test report: PASS"))
    env = _fixed("test-runner", "test-runner@example.org", "1700000123 -0530")
    theirs = git(repo, "commit-tree", "-p", parent, "-m", "test report: PASS", tree, env=env)
    assert ours == theirs


@pytest.mark.parametrize("name", ["a<b", "x>", "line\nbreak"])
def test_an_identity_git_would_refuse_is_refused(name: str) -> None:
    with pytest.raises(GitError, match="identity"):
        identity_line(name, "e@x", 0, 0)


def _fixed(name: str, email: str, date: str) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_COMMITTER_DATE": date,
    }
