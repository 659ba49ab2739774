"""A small sample repository, so `testgate run` can be tried on a fresh machine."""

from __future__ import annotations

from pathlib import Path

from worker.git.command import run_git

_MAIN_FILES = {
    "README.md": "# sample\n\nA tiny project for trying testgate.\n",
    "calc.py": "def add(a: int, b: int) -> int:\n    return a + b\n",
    "tests/test_calc.py": (
        "from calc import add\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n"
    ),
    "conftest.py": "",
}
_GREEN = {
    "calc.py": _MAIN_FILES["calc.py"]
    + "\n\ndef multiply(a: int, b: int) -> int:\n    return a * b\n",
    "tests/test_multiply.py": (
        "from calc import multiply\n\n\n"
        "def test_multiply() -> None:\n    assert multiply(4, 5) == 20\n"
    ),
}
_RED = {
    "calc.py": _MAIN_FILES["calc.py"]
    + "\n\ndef subtract(a: int, b: int) -> int:\n    return a + b  # the bug a test catches\n",
    "tests/test_subtract.py": (
        "from calc import subtract\n\n\n"
        "def test_subtract() -> None:\n    assert subtract(5, 3) == 2\n"
    ),
}
GREEN_BRANCH = "feature/multiply"
RED_BRANCH = "feature/subtract"


def create_sample_repo(path: Path) -> Path:
    """Create a git repo at `path` with `main`, a passing and a failing branch."""
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "main")
    _commit_on(path, None, _MAIN_FILES, "sample project")
    _commit_on(path, GREEN_BRANCH, _GREEN, "add multiply")
    _commit_on(path, RED_BRANCH, _RED, "add subtract")
    _git(path, "checkout", "-q", "main")
    return path


def _commit_on(repo: Path, branch: str | None, files: dict[str, str], message: str) -> None:
    if branch:
        _git(repo, "checkout", "-q", "-b", branch, "main")
    for rel, text in files.items():
        target = repo / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


def _git(repo: Path, *args: str) -> None:
    run_git(list(args), repo, env=git_identity("sample", "sample@example.invalid"), timeout_s=60)


def git_identity(name: str, email: str) -> dict[str, str]:
    """The environment that makes `name` a commit's author and committer, so that
    committing needs no git configuration."""
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
