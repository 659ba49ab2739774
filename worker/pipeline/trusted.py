"""The trusted run of a `trusted_tests` contract (docs/contract.md §14): the trusted ref's tests,
conftests and pytest configuration against the branch's code.

The trusted files are read from the mirror's objects at the merge base with the trusted
ref (never from a worktree a suite touched) and written over a worktree after its setup
ran (setup is the branch's code too): the branch's conftests, test files and anything
standing in for pytest are removed first. pytest then reads only the trusted
configuration (`-c`), and loads no plugin by entry point: the trusted run's plugins are
the ones its configuration and conftests name. When the branch changes none of those
files its own run is that run; otherwise the trusted run is a second one, in a fresh
checkout of the tested commit.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from worker.containment.sandbox import Sandbox
from worker.errors import CheckoutError, GitError
from worker.git.checkout import Checkout, checkout, merge_base
from worker.git.committed import committed_files, committed_tree
from worker.git.isolated import IsolatedGit
from worker.review.trusted_files import (
    changes_infra,
    config_candidates,
    holds_pytest_config,
    infra_of,
    is_test_infra,
    pytest_args,
    target_dir,
    trusted_config_path,
)
from worker.settings import Settings
from worker.suite.run import SuiteRun

# Plugins load only when the trusted configuration or a trusted conftest names them.
NO_AUTOLOAD = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
_MAX_WALK = 200_000


@dataclass(frozen=True)
class TrustedBase:
    """The trusted ref's test infrastructure at the merge base."""

    sha: str
    files: dict[str, tuple[str, bytes]]  # path -> (mode, content)
    config: str | None  # the configuration file pytest picks there
    changed: bool  # the branch's own run would load something else

    @property
    def texts(self) -> dict[str, bytes]:
        return {path: content for path, (_, content) in self.files.items()}


@dataclass(frozen=True)
class TrustedRun:
    """What the verdict reads under trusted tests."""

    base: TrustedBase
    deciding: SuiteRun  # the run of the trusted files against the branch's code
    own: SuiteRun | None  # the branch's own run, when it was a second one
    root: Path  # the worktree the deciding run ran in


def read_trusted_base(co: Checkout, target: str, ref: str, settings: Settings) -> TrustedBase:
    """The merge base's trusted files, and whether the branch changes any. Raises
    CheckoutError (no merge base, a fetch failed, objects unreadable)."""
    sha = merge_base(co, ref, git_timeout_s=settings.git_timeout_s)
    try:
        return _read(co, sha, target, settings)
    except GitError as exc:
        raise CheckoutError(f"reading the trusted files of {ref} ({sha}): {exc}") from exc


def _read(co: Checkout, sha: str, target: str, settings: Settings) -> TrustedBase:
    with IsolatedGit(
        co.mirror, timeout_s=settings.git_timeout_s, object_format=co.object_format
    ) as git:
        base, branch = committed_tree(git, sha), committed_tree(git, co.commit)
        candidates = config_candidates(target)
        wanted = {**infra_of(base, target), **{p: base[p] for p in candidates if p in base}}
        files = committed_files(git, wanted)
    texts = {p: files[p][1].decode("utf-8", "replace") for p in candidates if p in files}
    config = next((p for p, text in texts.items() if holds_pytest_config(p, text)), None)
    infra = {p: v for p, v in files.items() if p not in candidates or p == config}
    return TrustedBase(sha, infra, config, changes_infra(base, branch, target, candidates))


def overlay(worktree: Path, base: TrustedBase, target: str) -> tuple[str, ...]:
    """Put the trusted files over `worktree` (after its setup, before pytest) and return
    the options that make pytest read only the trusted configuration."""
    root = worktree.resolve()
    tree_dirs = frozenset(str(Path(p).parent) for p in base.files)
    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        if is_test_infra(rel, target, tree_dirs | {target_dir(target)}):
            remove_entry(path)
    for rel, (mode, content) in sorted(base.files.items()):
        if base.config == rel:
            continue  # the configuration goes in under the gate's name, below
        write_file(root, rel, content, mode)
    copy = trusted_config_path(base.config)
    text = base.files[base.config][1] if base.config else b"[pytest]\n"
    write_file(root, copy, text, "100644")
    return pytest_args(copy)


def no_autoload(sandbox: Sandbox) -> Sandbox:
    return replace(sandbox, extra_env={**sandbox.extra_env, **NO_AUTOLOAD})


@contextmanager
def fresh_checkout(co: Checkout, settings: Settings) -> Iterator[Checkout]:
    """Another checkout of the tested commit, one no suite has run in."""
    with checkout(
        co.repo,
        co.branch,
        co.commit,
        workdir=settings.workdir_path,
        url_template=settings.git_url_template,
        git_timeout_s=settings.git_timeout_s,
    ) as fresh:
        yield fresh


def _walk(root: Path) -> Iterator[Path]:
    """Every entry under `root` but `.git`, links not followed, bounded."""
    seen = 0
    for directory, dirs, names in os.walk(root, followlinks=False):
        here = Path(directory)
        if here == root:
            dirs[:] = [d for d in dirs if d != ".git"]
        for name in [*dirs, *names]:
            seen += 1
            if seen > _MAX_WALK:
                return
            yield here / name


def remove_entry(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def write_file(root: Path, rel: str, content: bytes, mode: str) -> None:
    """Write one trusted file, replacing whatever stands at its parents' paths that is
    not a real directory (a branch's link or file)."""
    parent = root
    for part in Path(rel).parts[:-1]:
        parent = parent / part
        if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
            parent.unlink()
        parent.mkdir(exist_ok=True)
    path = root / rel
    if path.is_symlink() or path.is_dir():
        remove_entry(path)
    path.write_bytes(content)
    path.chmod(0o755 if mode == "100755" else 0o644)
