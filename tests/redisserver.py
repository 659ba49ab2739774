"""A redis-server of a test's (or a test process's) own, on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.httpfixtures import free_port


class RedisServer:
    """`durable`: with an append-only file in `directory`, so that a restart keeps what
    was queued (SIGTERM is Redis's own graceful shutdown: it writes the file first).

    The server gets SIGTERM when the process that started it ends (setpriv, of
    util-linux), so one left running (a killed test run, or a server kept until exit
    for the Celery results still subscribed to it) never outlives its tests."""

    def __init__(self, directory: Path, *, durable: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        appendonly = ["yes", "--appendfsync", "everysec"] if self.durable else ["no"]
        self.process = subprocess.Popen(
            [
                *("setpriv", "--pdeathsig", "TERM"),
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.directory),
                "--appendonly",
                *appendonly,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0
