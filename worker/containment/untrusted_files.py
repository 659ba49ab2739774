"""Reading files that the suite could have written, replaced or linked.

Anything in the suite's reach (its worktree, its temp dir, the files it reports
progress or probe records into) may have been swapped for a symlink to the
worker's secrets, a FIFO that blocks its reader forever, a device that never ends, a
directory, a hard link, or a file of many gigabytes. `UntrustedDir` holds a directory
fd opened before the suite ran and reads through it only:

- every component is opened relative to that fd with O_NOFOLLOW, so neither the file
  nor a parent directory is ever a followed link, and replacing the directory itself
  (rename, symlink in its place) does not redirect the reads;
- O_NONBLOCK, so opening a FIFO returns at once, and fstat must then say "regular file
  with one link" or nothing is read;
- at most `limit` bytes are read.

Reads never raise: anything but a readable regular file gives None, logged at DEBUG.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger("testgate.untrusted_files")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_CHUNK = 1 << 16


class UntrustedDir:
    """A directory in the suite's reach, pinned by an fd; use as a context manager.
    Open it before the suite runs: the constructor raises OSError if `path` is not a
    directory (or is a symlink), nothing else does."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, _DIR_FLAGS)

    def read_bytes(self, name: str, limit: int) -> bytes | None:
        """At most `limit` bytes from the start of the regular file `name` (a path
        relative to the directory, each component a real directory), or None."""
        return self._read(name, limit, from_end=False)

    def read_text(self, name: str, limit: int) -> str | None:
        """`read_bytes` decoded as UTF-8, undecodable bytes replaced."""
        data = self._read(name, limit, from_end=False)
        return None if data is None else data.decode("utf-8", "replace")

    def tail(self, name: str, limit: int) -> str | None:
        """The last `limit` bytes of the regular file `name`, decoded as UTF-8 (a
        character cut at the start is dropped), or None."""
        data = self._read(name, limit, from_end=True)
        if data is None:
            return None
        start = 0
        while start < min(3, len(data)) and data[start] & 0xC0 == 0x80:
            start += 1  # continuation bytes of a character that began before the tail
        return data[start:].decode("utf-8", "replace")

    def size(self, name: str) -> int:
        """The size of the regular file `name` directly in the directory; 0 for anything
        else (the link itself is never followed)."""
        if self._fd is None or "/" in name or name in ("", ".", ".."):
            return 0
        try:
            info = os.stat(name, dir_fd=self._fd, follow_symlinks=False)
        except (OSError, ValueError):
            return 0
        return info.st_size if stat.S_ISREG(info.st_mode) else 0

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> UntrustedDir:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _read(self, name: str, limit: int, *, from_end: bool) -> bytes | None:
        if self._fd is None:
            logger.debug("read of %r in %s after close", name, self.path)
            return None
        parts = name.split("/")
        if limit < 0 or not all(part and part not in (".", "..") for part in parts):
            logger.debug("refused to read %r in %s: not a plain relative name", name, self.path)
            return None
        opened: list[int] = []
        try:
            parent = self._fd
            for part in parts[:-1]:
                parent = os.open(part, _DIR_FLAGS, dir_fd=parent)
                opened.append(parent)
            # lstat first, so that a FIFO or device is never even opened when it is
            # already there; fstat after the open is what the read relies on.
            if not stat.S_ISREG(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                logger.debug("%s/%s is not a regular file", self.path, name)
                return None
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
            opened.append(fd)
            return _read_regular(fd, limit, from_end=from_end, where=f"{self.path}/{name}")
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
            logger.debug("%s/%s not read: %s", self.path, name, exc)
            return None
        finally:
            for fd in reversed(opened):
                os.close(fd)


def _read_regular(fd: int, limit: int, *, from_end: bool, where: str) -> bytes | None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        logger.debug("%s turned out not to be a regular file", where)
        return None
    if info.st_nlink != 1:
        # A hard link can point at a file the worker may read and the suite may not.
        logger.debug("%s has %d links; not read", where, info.st_nlink)
        return None
    offset = max(0, info.st_size - limit) if from_end else 0
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.pread(fd, min(remaining, _CHUNK), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
