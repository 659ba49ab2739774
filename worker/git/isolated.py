"""A throw-away git directory that no suite has ever seen, for writing commits.

The suite under test can write to its worktree, the worktree's git dir and, without
full containment, the mirror it shares: config (filters, fsmonitor, `remote.*`,
`commit.gpgSign`, includes), hooks, attributes, `info/` files. None of that is read
here. The scratch git dir lives in a fresh 0700 temp dir, its only tie to the mirror
is `objects/info/alternates` (objects are read by their hash, never by name), and git
runs with system and global config off, no hooks, no fsmonitor, no replace refs and
no GIT_* variable inherited from the worker's environment.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from worker.errors import GitError
from worker.git.command import git_process

# Overrides of anything a config file could still set (the scratch config is ours and
# empty, but these also hold if git ever grows a new implicit config source).
_SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.attributesFile=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "push.recurseSubmodules=no",
    "-c",
    "submodule.recurse=false",
)


class IsolatedGit:
    """A private bare git dir whose object store falls back to `mirror`'s objects.

    Use as a context manager; `close()` removes the temp dir. Raises GitError when
    the scratch dir cannot be made.
    """

    def __init__(
        self,
        mirror: Path,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 120,
        temp_root: Path | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        try:
            self._tmp = Path(tempfile.mkdtemp(prefix="testgate-git-", dir=temp_root))
        except OSError as exc:
            raise GitError(f"no private temp dir for git: {exc}") from exc
        self.git_dir = self._tmp / "repo.git"
        self.index_file = self._tmp / "index"
        # update-index insists on a work tree; this one stays empty and private, and
        # nothing here reads or writes files in it.
        self.work_tree = self._tmp / "empty"
        self._env = _clean_env(self.git_dir, self.index_file, self.work_tree, env or {})
        try:
            # `--template=` (empty): no sample hooks, no info/exclude, nothing copied.
            self.work_tree.mkdir(mode=0o700)
            bare_env = {k: v for k, v in self._env.items() if k != "GIT_WORK_TREE"}
            self._run_raw(
                ["init", "--quiet", "--bare", "--template=", str(self.git_dir)], env=bare_env
            )
            objects = (mirror / "objects").resolve(strict=True)
            alternates = self.git_dir / "objects" / "info" / "alternates"
            alternates.parent.mkdir(parents=True, exist_ok=True)
            alternates.write_text(f"{objects}\n", encoding="utf-8")
        except (GitError, OSError) as exc:
            self.close()
            if isinstance(exc, GitError):
                raise
            raise GitError(f"cannot borrow the objects of {mirror}: {exc}") from exc

    def run(self, args: list[str], *, stdin: bytes | None = None, strip: bool = True) -> str:
        """`git <safe overrides> <args>` in the scratch dir: its stdout (stripped unless
        `strip` is false, for -z output), or GitError."""
        return self._run_raw([*_SAFE_CONFIG, *args], stdin=stdin, strip=strip)

    def verified_object(self, sha: str, kind: str) -> bytes:
        """The raw content of object `sha` of type `kind`, checked to hash to `sha`.

        git reads objects by name without re-hashing them, so a loose object rewritten
        in the mirror would otherwise be taken for the real one. GitError if not."""
        done = self._run_process([*_SAFE_CONFIG, "cat-file", kind, sha], stdin=None, env=None)
        content = done.stdout
        header = f"{kind} {len(content)}\0".encode()
        if hashlib.sha1(header + content, usedforsecurity=False).hexdigest() != sha:
            raise GitError(f"{kind} {sha} does not hash to its name: the mirror was altered")
        return content

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> IsolatedGit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run_raw(
        self,
        args: list[str],
        *,
        stdin: bytes | None = None,
        strip: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> str:
        out = self._run_process(args, stdin=stdin, env=env).stdout
        text = out.decode("utf-8", "surrogateescape")
        return text.strip() if strip else text

    def _run_process(
        self, args: list[str], *, stdin: bytes | None, env: Mapping[str, str] | None
    ) -> subprocess.CompletedProcess[bytes]:
        return git_process(
            args,
            self._tmp,
            env if env is not None else self._env,
            timeout_s=self.timeout_s,
            stdin=stdin,
        )


def _clean_env(
    git_dir: Path, index_file: Path, work_tree: Path, extra: Mapping[str, str]
) -> dict[str, str]:
    # No GIT_* from the worker's environment: GIT_DIR, GIT_INDEX_FILE, GIT_CONFIG_*,
    # GIT_EXEC_PATH, GIT_SSH_COMMAND... would each redirect or extend what runs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "GIT_DIR": str(git_dir),
            "GIT_INDEX_FILE": str(index_file),
            "GIT_WORK_TREE": str(work_tree),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_OPTIONAL_LOCKS": "0",
        }
    )
    env.update(extra)
    return env
