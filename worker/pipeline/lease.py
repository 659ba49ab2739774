"""The run lease: one delivery runs a request at a time, and only while it is alive.

The lease is short (TESTGATE_LEASE_S) and renewed by a heartbeat thread while the
delivery runs, so a delivery that died loses it within one lease, while a live one
keeps it however long its suite takes. A broker may hand the same message to a second
delivery meanwhile (a lost connection restores it on Redis and requeues it on RabbitMQ);
that copy waits for the live one instead of killing its suite, and takes over only
when the lease lapses.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from worker.errors import StateUnavailable
from worker.state import GateState

logger = logging.getLogger("testgate.lease")


def owner_for(message_id: str) -> str:
    """A name for one delivery of a message: its id plus a token of this delivery, so
    two deliveries of the same message never mistake each other's lease for their own."""
    return f"{message_id}/{uuid.uuid4().hex[:12]}"


def message_of(owner: str) -> str:
    return owner.rpartition("/")[0]


@dataclass(frozen=True)
class Busy:
    """Another message holds the request's lease: this one coalesces into that run."""

    holder: str


@dataclass(frozen=True)
class Answered:
    """While this delivery waited, another delivery of the same message answered it."""


class Lease:
    """A held lease and the thread that renews it until `stop()`."""

    def __init__(self, state: GateState, key: str, owner: str, ttl_s: float) -> None:
        self.key = key
        self.owner = owner
        self._state = state
        self._ttl_s = ttl_s
        self._stopped = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_until_stopped, name=f"lease-{key}", daemon=True
        )

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease taken by another delivery."""
        return self._lost.is_set()

    def start(self) -> Lease:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._state.release_run(self.key, self.owner)

    def _renew_until_stopped(self) -> None:
        # A third of the lease: two renewals may fail (a Redis blip) before it lapses.
        while not self._stopped.wait(self._ttl_s / 3):
            try:
                held = self._state.renew_run(self.key, self.owner, self._ttl_s)
            except StateUnavailable as exc:
                logger.warning("lease %s not renewed (retried): %s", self.key, exc)
                continue
            if not held:
                # Another delivery took over after a lapse; the answer guard still
                # keeps it to one answer, this run just lost its claim to be the one.
                logger.error("lease %s lapsed and was taken over; %s", self.key, self.owner)
                self._lost.set()
                return


def take_lease(state: GateState, key: str, owner: str, ttl_s: float) -> Lease | Busy | Answered:
    """Hold `key` for this delivery, or say why not.

    A different message holding it is a concurrent request for the same work: Busy (the
    caller drops this one; the holder's own message is acked only when it ends, so
    nothing is lost). A delivery of *this* message holding it is alive (it renews its
    lease): wait until it answers (Answered), or its lease ends (take it). Raises
    StateUnavailable when Redis cannot be asked.
    """
    message_id = message_of(owner)
    poll_s = min(max(ttl_s / 10, 0.2), 2.0)
    waiting_since: float | None = None
    while True:
        holder = state.acquire_run(key, owner, ttl_s)
        if holder is None:
            # An answering delivery confirms its answer before it releases the lease, so
            # a message found unanswered here was not answered by anyone before us.
            if state.answered(message_id):
                state.release_run(key, owner)
                return Answered()
            if waiting_since is not None:
                logger.warning(
                    "lease %s free after %.1fs: this delivery of %s takes over",
                    key,
                    time.monotonic() - waiting_since,
                    message_id,
                )
            return Lease(state, key, owner, ttl_s).start()
        if message_of(holder) != message_id:
            return Busy(holder)
        if state.answered(message_id):
            return Answered()
        if waiting_since is None:
            waiting_since = time.monotonic()
            logger.warning(
                "message %s delivered again while %s still runs it: waiting for it to "
                "answer or for its lease to lapse",
                message_id,
                holder,
            )
        time.sleep(poll_s)  # polling a lease in Redis: nothing to be woken by
