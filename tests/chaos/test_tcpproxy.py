"""The proxy the chaos tests cut: a cut must hold, and a closed proxy must be gone.

A chaos test's advance once arrived mid-outage because the previous test's proxy, closed
but with its accept loop still running, accepted a connection meant for the next proxy
(the descriptor number had been reused) and forwarded it to the broker."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.chaos.tcpproxy import TcpProxy


@contextmanager
def counting_server() -> Iterator[tuple[int, list[int]]]:
    """A loopback server that counts the connections it is given."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)


def forwarded_once(port: int) -> bytes:
    """Connects through a proxy and reads until the far side closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.recv(1)


def test_a_closed_proxy_accepts_nothing_more() -> None:
    with counting_server() as (target, accepted):
        with TcpProxy("127.0.0.1", target) as proxy:
            forwarded_once(proxy.port)
        with pytest.raises(ConnectionRefusedError):
            forwarded_once(proxy.port)
    assert len(accepted) == 1


def test_a_later_proxy_gets_every_connection_made_to_it() -> None:
    with counting_server() as (first_target, first), counting_server() as (second_target, second):
        with TcpProxy("127.0.0.1", first_target) as earlier:
            forwarded_once(earlier.port)
        with TcpProxy("127.0.0.1", second_target) as later:
            for _ in range(20):
                forwarded_once(later.port)
        assert (len(first), len(second)) == (1, 20)


def test_while_down_every_connection_is_refused_and_none_reaches_the_target() -> None:
    with counting_server() as (target, accepted), TcpProxy("127.0.0.1", target) as proxy:
        proxy.down()
        for _ in range(5):
            assert forwarded_once(proxy.port) == b""
        proxy.up()
        forwarded_once(proxy.port)
    assert (proxy.refused, len(accepted)) == (5, 1)
