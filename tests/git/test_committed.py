"""Reading a commit's files and diff from the mirror's objects: what the commit holds,
whatever its worktree says, and only what it holds as regular files."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from testkit.repofactory import git
from worker.errors import GitError
from worker.git.committed import committed_diff, committed_files, committed_texts, committed_tree
from worker.git.isolated import IsolatedGit

ODD_NAMES = ("*.py", "[ab].py", "dir with space/ünï.py", ":(glob)x.py")


@pytest.fixture(params=["sha1", "sha256"])
def mirror(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, str, str]:
    """A bare repository with two commits; (its path, the first, the second)."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main", f"--object-format={request.param}")
    (work / "a.py").write_text("def a():\n    return 1\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "one")
    first = git(work, "rev-parse", "HEAD")
    (work / "a.py").write_text("def a():\n    return 2\n")
    for name in ODD_NAMES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(f"# {name}\n")
    (work / "big.py").write_text("x = 1\n" * 1000)
    (work / "latin1.py").write_bytes(b"s = '\xe9'\n")
    (work / "exec.py").write_text("print()\n")
    (work / "exec.py").chmod(0o755)
    os.symlink("/etc/hostname", work / "link.py")
    git(work, "add", "-A")
    # A submodule entry: a commit id where a file would be.
    git(work, "update-index", "--add", "--cacheinfo", f"160000,{first},sub.py")
    git(work, "commit", "-q", "-m", "two")
    second = git(work, "rev-parse", "HEAD")
    bare = tmp_path / "mirror.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare, first, second


def isolated(bare: Path, tmp_path: Path) -> IsolatedGit:
    object_format = git(bare, "rev-parse", "--show-object-format")
    return IsolatedGit(bare, object_format=object_format, temp_root=tmp_path)


def test_only_regular_files_within_the_bound_are_read_as_committed(
    mirror: tuple[Path, str, str], tmp_path: Path
) -> None:
    bare, first, second = mirror
    asked = ["a.py", *ODD_NAMES, "big.py", "latin1.py", "exec.py", "link.py", "sub.py"]
    with isolated(bare, tmp_path) as g:
        texts = committed_texts(g, second, [*asked, "missing.py", None], max_bytes=1000)
        old = committed_texts(g, first, asked, max_bytes=1000)
    assert texts == {
        "a.py": "def a():\n    return 2\n",
        **{name: f"# {name}\n" for name in ODD_NAMES},
        "latin1.py": "s = '\ufffd'\n",
        "exec.py": "print()\n",
    }
    assert old == {"a.py": "def a():\n    return 1\n"}


def test_a_whole_tree_is_listed_as_its_blobs_and_read_as_its_regular_files(
    mirror: tuple[Path, str, str], tmp_path: Path
) -> None:
    bare, _, second = mirror
    with isolated(bare, tmp_path) as g:
        tree = committed_tree(g, second)
        files = committed_files(g, tree)
    # Every blob, in subdirectories too; a submodule is no blob; a link is one.
    assert set(tree) == {"a.py", *ODD_NAMES, "big.py", "latin1.py", "exec.py", "link.py"}
    assert tree["exec.py"].mode == "100755" and tree["link.py"].mode == "120000"
    assert tree["big.py"].size == 6000
    assert set(files) == set(tree) - {"link.py"}
    assert files["exec.py"] == ("100755", b"print()\n")


def test_the_diff_is_between_the_two_commits_and_nothing_else(
    mirror: tuple[Path, str, str], tmp_path: Path
) -> None:
    bare, first, second = mirror
    with isolated(bare, tmp_path) as g:
        diff = committed_diff(g, first, second, options=("--unified=0",), paths=("a.py",))
        assert committed_diff(g, first, first, options=(), paths=("*.py",)) == ""
    assert "-    return 1\n+    return 2\n" in diff
    assert "ünï" not in diff  # only the paths asked for


def test_a_replace_ref_in_the_mirror_does_not_change_what_is_read(
    mirror: tuple[Path, str, str], tmp_path: Path
) -> None:
    bare, first, second = mirror
    git(bare, "replace", second, first)
    with isolated(bare, tmp_path) as g:
        diff = committed_diff(g, first, second, options=(), paths=("a.py",))
        assert committed_texts(g, second, ["a.py"], max_bytes=100) == {
            "a.py": "def a():\n    return 2\n"
        }
    assert "+    return 2" in diff


def test_a_blob_rewritten_under_its_name_is_refused(
    mirror: tuple[Path, str, str], tmp_path: Path
) -> None:
    bare, _, second = mirror
    sha = git(bare, "rev-parse", f"{second}:a.py")
    forged = b"def a():\n    return 3\n"
    loose = bare / "objects" / sha[:2] / sha[2:]
    loose.unlink()  # the clone made every object loose, and this is the only copy
    loose.write_bytes(zlib.compress(f"blob {len(forged)}\0".encode() + forged))
    with isolated(bare, tmp_path) as g, pytest.raises(GitError, match="hash"):
        committed_texts(g, second, ["a.py"], max_bytes=100)
