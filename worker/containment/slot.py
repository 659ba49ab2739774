"""A pool process's slot, `workdir/slots/p<pid>/`: the one directory its contained warm
interpreter (warm_jail.py) may write, so the same for every job: the worktree is made at
`src/`, the suite's HOME, TMPDIR and output directory under `suite/`; what the worker
keeps of a job (logs, scratch files) stays outside.

Made fresh at its first use in the process, checked empty before each job and emptied
after it (never following a link), once every process of the job is dead. One job at a
time: a second thread of the process gets no slot (its suite runs cold, elsewhere).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("testgate.slot")

_EMPTY_ROUNDS = 16  # each round opens up one more level of directories locked by mode


@dataclass(frozen=True)
class Slot:
    path: Path

    @property
    def src(self) -> Path:
        """Where the job's worktree is made."""
        return self.path / "src"

    @property
    def suite(self) -> Path:
        """Where the job's HOME, TMPDIR and output directory are made."""
        return self.path / "suite"

    def empty(self) -> bool:
        """Remove everything in the slot; True when it is then empty."""
        for _ in range(_EMPTY_ROUNDS):
            try:
                entries = list(os.scandir(self.path))
            except OSError as exc:
                logger.error("slot %s cannot be listed: %s", self.path, exc)
                return False
            if not entries:
                return True
            for entry in entries:
                _remove(Path(entry.path))
        logger.error("slot %s could not be emptied", self.path)
        return False


_lock = threading.Lock()
_made: dict[Path, int] = {}  # slots this process made fresh, by path: its pid
_in_use: set[Path] = set()


def slot_path(workdir: Path) -> Path:
    return workdir / "slots" / f"p{os.getpid()}"


def process_slot(workdir: Path) -> Slot | None:
    """This process's slot, made fresh if this is its first use here (a warm
    interpreter started before any job binds it); None when it cannot be made."""
    slot = Slot(slot_path(workdir))
    with _lock:
        if slot.path in _in_use:
            return slot  # a job has it, so it exists
        return slot if _make_fresh(slot) else None


@contextmanager
def pool_slot(workdir: Path) -> Iterator[Slot | None]:
    """This process's slot for one job, empty; None when another thread has it or it
    cannot be made empty. Emptied again when the block ends."""
    path = slot_path(workdir)
    with _lock:
        if path in _in_use:
            yield None  # another job of this process: it gets no slot
            return
        _in_use.add(path)
    slot = Slot(path)
    try:
        ready = _make_fresh(slot)
        if ready and any(slot.path.iterdir()):
            logger.warning("slot %s was not empty before a job: emptied", slot.path)
            ready = slot.empty()
        yield slot if ready else None
    finally:
        if path.is_dir():
            slot.empty()
        with _lock:
            _in_use.discard(path)


def _make_fresh(slot: Slot) -> bool:
    if _made.get(slot.path) != os.getpid():
        # First use here: whatever is there was left by a dead process with our pid.
        if slot.path.is_symlink() or slot.path.is_file():
            slot.path.unlink()
        elif slot.path.is_dir():
            slot.empty()
        try:
            slot.path.mkdir(parents=True, mode=0o700, exist_ok=True)
        except OSError as exc:
            logger.error("slot %s cannot be made: %s", slot.path, exc)
            return False
        _made[slot.path] = os.getpid()
    return True


def _remove(path: Path) -> None:
    try:
        if stat.S_ISDIR(path.lstat().st_mode):
            shutil.rmtree(path, onerror=_open_up)
        else:
            path.unlink()
    except OSError as exc:
        logger.debug("%s not removed yet: %s", path, exc)


def _open_up(_func: Any, name: str, _exc: Any) -> None:
    """shutil.rmtree's error handler: a directory the suite made unreadable or
    unwritable gets its owner's permissions back, for the next round."""
    for directory in (Path(name), Path(name).parent):
        try:
            if stat.S_ISDIR(directory.lstat().st_mode):
                directory.chmod(0o700)
        except OSError:
            pass
