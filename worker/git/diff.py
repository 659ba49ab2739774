"""Read `git diff -M --unified=0` into plain data (pure).

Every added and removed line keeps its file and line number (the new file's for an
added line, the old file's for a removed one), so a finding can point at the exact
line of the diff that explains it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPE = re.compile(rb"\\([0-7]{3}|.)")
_ESCAPED = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"a": b"\a", b"b": b"\b", b"f": b"\f"}


@dataclass(frozen=True)
class DiffLine:
    path: str
    line: int  # 1-based, in the new file for "+", in the old file for "-"
    sign: Literal["+", "-"]
    text: str

    def render(self, width: int = 160) -> str:
        shown = f"{self.path}:{self.line}: {self.sign}{self.text.rstrip()}"
        return shown if len(shown) <= width else shown[: width - 3] + "..."


@dataclass(frozen=True)
class FileChange:
    old_path: str | None  # None: the file was added
    new_path: str | None  # None: the file was deleted
    added: tuple[DiffLine, ...] = ()
    removed: tuple[DiffLine, ...] = ()

    @property
    def renamed(self) -> bool:
        return self.old_path is not None and self.new_path not in (None, self.old_path)


class _Builder:
    """The file being read: its paths from the headers, its lines from the hunks."""

    def __init__(self, header: str) -> None:
        self.old, self.new = _header_paths(header)
        self.added: list[DiffLine] = []
        self.removed: list[DiffLine] = []
        self.old_line = self.new_line = 0
        self.old_left = self.new_left = 0  # lines of the current hunk still to come

    def read(self, line: str) -> None:
        if self.old_left > 0 or self.new_left > 0:
            self._hunk_line(line)
        elif match := _HUNK.match(line):
            self.old_line, self.new_line = int(match[1]), int(match[3])
            self.old_left = int(match[2]) if match[2] is not None else 1
            self.new_left = int(match[4]) if match[4] is not None else 1
        elif line.startswith("new file mode"):
            self.old = None
        elif line.startswith("deleted file mode"):
            self.new = None
        elif line.startswith("rename from "):
            self.old = _unquote(line[len("rename from ") :])
        elif line.startswith("rename to "):
            self.new = _unquote(line[len("rename to ") :])
        elif line.startswith("--- "):
            self.old = _side_path(line[4:])
        elif line.startswith("+++ "):
            self.new = _side_path(line[4:])

    def _hunk_line(self, line: str) -> None:
        sign, text = line[:1], line[1:]
        if sign == "-":
            if self.old is not None:
                self.removed.append(DiffLine(self.old, self.old_line, "-", text))
            self.old_line, self.old_left = self.old_line + 1, self.old_left - 1
        elif sign == "+":
            if self.new is not None:
                self.added.append(DiffLine(self.new, self.new_line, "+", text))
            self.new_line, self.new_left = self.new_line + 1, self.new_left - 1
        elif sign == " ":
            self.old_line, self.new_line = self.old_line + 1, self.new_line + 1
            self.old_left, self.new_left = self.old_left - 1, self.new_left - 1
        # "\ No newline at end of file" belongs to the line before it: nothing to count.

    def change(self) -> FileChange:
        return FileChange(self.old, self.new, tuple(self.added), tuple(self.removed))


def parse_diff(text: str) -> tuple[FileChange, ...]:
    """Every file of a `git diff` (any context size, with or without rename detection)."""
    changes: list[FileChange] = []
    current: _Builder | None = None
    for line in text.splitlines():
        if line.startswith("diff --git "):
            if current is not None:
                changes.append(current.change())
            current = _Builder(line[len("diff --git ") :])
        elif current is not None:
            current.read(line)
    if current is not None:
        changes.append(current.change())
    return tuple(changes)


def _header_paths(header: str) -> tuple[str | None, str | None]:
    """`a/x b/x` -> both paths; the `---`/`+++`/rename lines that follow correct them,
    so an ambiguous header (spaces in names) only matters for a mode-only change."""
    if header.startswith('"'):
        end = header.find('" ', 1)
        if end > 0:
            return _side_path(header[: end + 1]), _side_path(header[end + 2 :])
    half = header.find(" b/")
    if half > 0:
        return _side_path(header[:half]), _side_path(header[half + 1 :])
    return None, None


def _side_path(raw: str) -> str | None:
    path = _unquote(raw.rstrip("\t"))
    if path == "/dev/null":
        return None
    return path[2:] if path[:2] in ("a/", "b/") else path


def _unquote(raw: str) -> str:
    """git C-quotes a path with unusual characters: "a/t\\303\\251st.py"."""
    if not (len(raw) >= 2 and raw.startswith('"') and raw.endswith('"')):
        return raw
    data = _ESCAPE.sub(_unescape, raw[1:-1].encode("utf-8"))
    return data.decode("utf-8", errors="replace")


def _unescape(match: re.Match[bytes]) -> bytes:
    code = match[1]
    if len(code) == 3:
        return bytes([int(code, 8)])
    return _ESCAPED.get(code, code)
