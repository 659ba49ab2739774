"""Git's object formats, for the few objects the gate writes itself: the report's blob,
the trees from the root down to it, and its commit. Pure: bytes in, bytes out.

Writing these directly saves a job the seven git processes that read-tree, update-index,
write-tree and commit-tree took (a quarter of a job's git CPU); git still reads every
one of them back before anything is pushed (worker/report/publish.py).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from worker.errors import GitError

TREE_MODE = b"40000"
FILE_MODE = b"100644"
_SHA_BYTES = 20


@dataclass(frozen=True)
class TreeEntry:
    mode: bytes  # as stored: b"40000", b"100644", b"100755", b"120000", b"160000"
    name: bytes
    sha: str  # hex

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE


def object_id(kind: str, content: bytes) -> str:
    """The name git gives an object of `kind` holding `content`."""
    header = f"{kind} {len(content)}\0".encode()
    return hashlib.sha1(header + content, usedforsecurity=False).hexdigest()


def loose_object(kind: str, content: bytes) -> tuple[str, bytes]:
    """The object's name and its bytes as a loose object file (zlib of header + content)."""
    header = f"{kind} {len(content)}\0".encode()
    return object_id(kind, content), zlib.compress(header + content, 1)


def parse_tree(raw: bytes) -> dict[bytes, TreeEntry]:
    """name -> entry of a raw tree object (`<mode> <name>\\0<20-byte sha>`...)."""
    entries: dict[bytes, TreeEntry] = {}
    at = 0
    try:
        while at < len(raw):
            space = raw.index(b" ", at)
            nul = raw.index(b"\0", space)
            sha = raw[nul + 1 : nul + 1 + _SHA_BYTES]
            if len(sha) != _SHA_BYTES:
                raise ValueError("an entry's object name is cut short")
            name = raw[space + 1 : nul]
            entries[name] = TreeEntry(raw[at:space], name, sha.hex())
            at = nul + 1 + _SHA_BYTES
    except ValueError as exc:
        raise GitError(f"a malformed tree object: {exc}") from exc
    return entries


def tree_content(entries: Iterable[TreeEntry]) -> bytes:
    """A tree object's content, its entries in git's order: by name, a directory's name
    compared as if it ended in '/' (so `a-b`, `a.b`, then the directory `a`)."""

    def order(entry: TreeEntry) -> bytes:
        return entry.name + b"/" if entry.is_tree else entry.name

    return b"".join(
        entry.mode + b" " + entry.name + b"\0" + bytes.fromhex(entry.sha)
        for entry in sorted(entries, key=order)
    )


def identity_line(name: str, email: str, seconds: int, utc_offset_s: int) -> str:
    """`Name <email> 1700000000 +0100`, as git writes an author or committer."""
    if any(c in f"{name}{email}" for c in "<>\n\0"):
        raise GitError(f"an identity git would refuse: {name!r} <{email!r}>")
    sign = "-" if utc_offset_s < 0 else "+"
    hours, minutes = divmod(abs(utc_offset_s) // 60, 60)
    return f"{name} <{email}> {seconds} {sign}{hours:02d}{minutes:02d}"


def commit_content(tree: str, parent: str, author: str, committer: str, message: str) -> bytes:
    """A commit object's content with one parent, as `git commit-tree -m` writes it."""
    body = message.rstrip("\n") + "\n"
    return (
        f"tree {tree}\nparent {parent}\nauthor {author}\ncommitter {committer}\n\n{body}"
    ).encode("utf-8", "surrogateescape")
