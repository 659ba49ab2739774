"""A loopback TCP forwarder that a test can cut: the broker as the worker sees it.

`down()` drops every open connection and refuses new ones (accepted and closed at once,
as a broker that is gone would look to a client); `up()` forwards again; `reset()` drops
every open connection and never refuses a new one (a blip with no gap to race)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._down = False
        self._closed = False
        self.refused = 0  # connection attempts while down
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The accept loop is stopped before the listener's descriptor is freed: a loop
        # still running could otherwise accept on that number once the next proxy's
        # listener has it, and forward a later test's worker to this one's broker as it
        # was, outage or not (a chaos test's advance arrived that way mid-outage).
        # shutdown() wakes an accept() blocked on the socket (EINVAL on Linux).
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(timeout=10)
        self._listener.close()
        self._drop_all()

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@" if credentials else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}"))

    def down(self) -> None:
        with self._lock:
            self._down = True
        self._drop_all()

    def up(self) -> None:
        with self._lock:
            self._down = False

    def reset(self) -> None:
        """Drop what is open, refuse nothing. `down(); up()` leaves a window, as long as
        this process is descheduled between the two, in which the client's reconnect is
        refused: kombu's restore of the running message runs then, fails, and Celery
        swallows it (the message comes back only at its visibility timeout)."""
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._closed:
                client.close()
                return
            with self._lock:
                down = self._down
                if down:
                    self.refused += 1
            if down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            # down() may have run while this connection was being made: it dropped what
            # was open then, so the pair is either registered before the drop or refused
            # here, never left forwarding through the outage.
            with self._lock:
                down = self._down
                if down:
                    self.refused += 1
                else:
                    self._open |= {client, upstream}
            if down:
                client.close()
                upstream.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
