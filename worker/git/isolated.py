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
import tempfile
from collections.abc import Mapping
from pathlib import Path

from worker.errors import GitError
from worker.git.command import git_process

# Overrides of anything a config file could still set (the scratch config is ours and
# empty, but these also hold if git ever grows a new implicit config source).
_SAFE_SETTINGS = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.attributesFile=/dev/null",
    "commit.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "protocol.ext.allow=never",
    "push.recurseSubmodules=no",
    "submodule.recurse=false",
)
_SAFE_CONFIG = tuple(arg for setting in _SAFE_SETTINGS for arg in ("-c", setting))


class IsolatedGit:
    """A private bare git dir whose object store falls back to `mirror`'s objects;
    `object_format` is the mirror's (`sha1`, `sha256`: git's names, which hashlib shares).

    Use as a context manager; `close()` removes the temp dir. Raises GitError when
    the scratch dir cannot be made.
    """

    def __init__(
        self,
        mirror: Path,
        *,
        object_format: str,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 120,
        temp_root: Path | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.object_format = object_format
        try:
            # Hex digits in an object's full name.
            self.name_length = hashlib.new(object_format, usedforsecurity=False).digest_size * 2
        except ValueError as exc:
            raise GitError(f"an object format this worker cannot check: {object_format!r}") from exc
        try:
            self._tmp = Path(tempfile.mkdtemp(prefix="testgate-git-", dir=temp_root))
        except OSError as exc:
            raise GitError(f"no private temp dir for git: {exc}") from exc
        self.git_dir = self._tmp / "repo.git"
        # No index is used; a private one, so that none is ever found elsewhere.
        self.index_file = self._tmp / "index"
        self._env = _clean_env(self.git_dir, self.index_file, env or {})
        try:
            # No template: no sample hooks, no info/exclude, nothing copied.
            init = ["init", "--bare", "--quiet", "--template=", f"--object-format={object_format}"]
            self._run([*_SAFE_CONFIG, *init], stdin=None)
            objects = (mirror / "objects").resolve(strict=True)
            alternates = self.git_dir / "objects" / "info" / "alternates"
            alternates.write_text(f"{objects}\n", encoding="utf-8")
        except (OSError, GitError) as exc:
            self.close()
            raise GitError(f"cannot borrow the objects of {mirror}: {exc}") from exc

    def run(self, args: list[str], *, stdin: bytes | None = None, strip: bool = True) -> str:
        """`git <safe overrides> <args>` in the scratch dir: its stdout (stripped unless
        `strip` is false, for -z output), or GitError."""
        text = self._run([*_SAFE_CONFIG, *args], stdin=stdin).decode("utf-8", "surrogateescape")
        return text.strip() if strip else text

    def verified_objects(self, names: list[str]) -> list[tuple[str, str, bytes] | None]:
        """(sha, type, content) of each object `names` name (a SHA, `<rev>^{tree}`,
        `<rev>:<path>`: one line of `git cat-file --batch` each, so never a newline),
        None where there is none; all read by one git process and each checked to hash
        to its name. GitError if not."""
        if any("\n" in name for name in names):
            raise GitError(f"an object name with a newline: {names!r}")
        if not names:
            return []
        out = self._run(
            [*_SAFE_CONFIG, "cat-file", "--batch"], stdin="".join(f"{n}\n" for n in names).encode()
        )
        found: list[tuple[str, str, bytes] | None] = []
        at = 0
        for name in names:
            newline = out.find(b"\n", at)
            if newline < 0:
                raise GitError(f"cat-file ended before {name!r}")
            header = out[at:newline].decode("utf-8", "replace").split(" ")
            at = newline + 1
            if len(header) != 3 or not header[2].isdigit():
                found.append(None)  # "<name> missing", "<name> ambiguous"
                continue
            sha, kind, size = header[0], header[1], int(header[2])
            content = out[at : at + size]
            at += size + 1
            if len(content) != size or self.object_id(kind, content) != sha:
                raise GitError(f"{kind} {sha} does not hash to its name: the mirror was altered")
            found.append((sha, kind, content))
        return found

    def object_id(self, kind: str, content: bytes) -> str:
        """The name git gives an object of `kind` holding `content` in this format."""
        header = f"{kind} {len(content)}\0".encode()
        digest = hashlib.new(self.object_format, usedforsecurity=False)
        digest.update(header + content)
        return digest.hexdigest()

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> IsolatedGit:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, args: list[str], *, stdin: bytes | None) -> bytes:
        return git_process(args, self._tmp, self._env, timeout_s=self.timeout_s, stdin=stdin).stdout


def _clean_env(git_dir: Path, index_file: Path, extra: Mapping[str, str]) -> dict[str, str]:
    # No GIT_* from the worker's environment: GIT_DIR, GIT_INDEX_FILE, GIT_CONFIG_*,
    # GIT_EXEC_PATH, GIT_SSH_COMMAND... would each redirect or extend what runs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "GIT_DIR": str(git_dir),
            "GIT_INDEX_FILE": str(index_file),
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
