"""Keeping the report's markdown bounded (pure).

The suite controls much of what the report quotes (test ids, messages, output), so
every piece is clipped where it is rendered, and the body as a whole is cut to fit
what is left of the report's budget after the frontmatter, which is never cut.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Longer runs of backticks are shortened, so a fence (one longer than any run inside)
# stays short whatever the suite printed.
MAX_BACKTICK_RUN = 15
_BACKTICK_RUN = re.compile(r"`+")
_LONG_BACKTICK_RUN = re.compile(f"`{{{MAX_BACKTICK_RUN + 1},}}")
_FENCE_LINE = re.compile(r"(`{3,})[^`]*")
# Room kept for the note that says what was left out, and for closing a cut fence.
_NOTE_ROOM = 256 + MAX_BACKTICK_RUN + 2


def clip(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its head and how much is cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def fenced(text: str, info: str = "") -> str:
    """A code block that `text` cannot close early, whatever backticks it holds."""
    text = _LONG_BACKTICK_RUN.sub("`" * MAX_BACKTICK_RUN, text)
    longest = max((len(m.group()) for m in _BACKTICK_RUN.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}\n"


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def fit_sections(sections: Sequence[str], budget: int) -> str:
    """The sections joined by newlines, if that fits in `budget` UTF-8 bytes; else as
    many whole sections as fit, the next one cut at a line (a code block it cuts is
    closed), and a visible note of what was left out. Never more than `budget` bytes."""
    whole = "\n".join(sections)
    if utf8_len(whole) <= budget:
        return whole
    room = budget - _NOTE_ROOM
    kept: list[str] = []
    used = 0
    for index, section in enumerate(sections):
        cost = utf8_len(section) + (1 if kept else 0)
        if used + cost <= room:
            kept.append(section)
            used += cost
            continue
        cut, cut_bytes = _cut_markdown(section, room - used - (1 if kept else 0))
        if cut:
            kept.append(cut)
        later = len(sections) - index - 1
        note = (
            f"\n*(Report truncated to its size limit: {cut_bytes} bytes of this section "
            f"and {later} later section(s) were left out.)*\n"
        )
        return _hard_cut("\n".join(kept) + note, budget)
    return _hard_cut("\n".join(kept), budget)  # not reached: the whole did not fit


def _cut_markdown(section: str, room: int) -> tuple[str, int]:
    """The longest head of `section` in whole lines (the last one cut if it alone is
    too long) that fits in `room` bytes with a fence it opened closed again; and how
    many bytes of the section were left out."""
    if room <= 0:
        return "", utf8_len(section)
    lines: list[str] = []
    used = 0
    open_fence: str | None = None
    for line in section.split("\n"):
        closing = len(open_fence) + 1 if open_fence else 0
        cost = utf8_len(line) + 1
        if used + cost + closing > room:
            left = room - used - closing - 1
            if left > 0:
                lines.append(_cut_utf8(line, left))
            break
        lines.append(line)
        used += cost
        open_fence = _fence_state(line, open_fence)
    else:
        return section, 0
    head = "\n".join(lines)
    if open_fence is not None:
        head += f"\n{open_fence}"
    return head, max(0, utf8_len(section) - utf8_len(head))


def _fence_state(line: str, open_fence: str | None) -> str | None:
    """The fence open after `line`: a block opens on a backtick fence line and closes
    on a line of at least as many backticks alone."""
    match = _FENCE_LINE.fullmatch(line)
    if open_fence is None:
        return match.group(1) if match else None
    if match and line == match.group(1) and len(line) >= len(open_fence):
        return None
    return open_fence


def _cut_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")


def _hard_cut(text: str, budget: int) -> str:
    # The accounting above already keeps within the budget; this makes it a guarantee.
    return text if utf8_len(text) <= budget else _cut_utf8(text, budget)
