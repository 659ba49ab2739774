"""Proof that a suite's interpreter came up, and the nonce its session record must carry.

Two pipes per pytest run, made by the worker. The suite's side: a cold start's boot
script (worker/insuite/boot.py) writes one byte to the first before any code of the
suite runs; the probe plugin reads the nonce from the second once and closes it. The
worker keeps the other ends, so the suite cannot take back that it started (a suite
that exits 126 is a suite that failed, not one that could not start), and a session
record without the nonce is not evidence.
"""

from __future__ import annotations

import contextlib
import os
import secrets

STARTED_FD_VAR = "GATE_STARTED_FD"
NONCE_FD_VAR = "GATE_NONCE_FD"
NONCE_VAR = "GATE_NONCE"  # a warm start's: its /proc environ is the warm interpreter's


class StartWitness:
    """The worker's ends of one run's pipes. Close it when the run has ended."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(16)
        self._started_read, self._started_write = os.pipe()
        self._nonce_read, nonce_write = os.pipe()
        try:
            os.write(nonce_write, self.nonce.encode())
        finally:
            os.close(nonce_write)
        os.set_blocking(self._started_read, False)
        self._seen = False
        self._child_ends_open = True

    @property
    def child_fds(self) -> tuple[int, int]:
        """What a cold start passes to its child (Popen's pass_fds)."""
        return (self._started_write, self._nonce_read)

    def cold_env(self) -> dict[str, str]:
        return {STARTED_FD_VAR: str(self._started_write), NONCE_FD_VAR: str(self._nonce_read)}

    def warm_env(self) -> dict[str, str]:
        return {NONCE_VAR: self.nonce}

    def spawned(self) -> None:
        """The child has its copies: drop ours, so only the child holds the write end."""
        if self._child_ends_open:
            self._child_ends_open = False
            for fd in (self._started_write, self._nonce_read):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def mark_started(self) -> None:
        """A warm start's word (its interpreter says the suite's code is about to run)."""
        self._seen = True

    def started(self) -> bool:
        """Whether the interpreter said it came up; never blocks."""
        if not self._seen:
            with contextlib.suppress(OSError):  # nothing written (yet): not started
                self._seen = bool(os.read(self._started_read, 1))
        return self._seen

    def close(self) -> None:
        self.spawned()
        with contextlib.suppress(OSError):
            os.close(self._started_read)
