"""Real HTTP servers on 127.0.0.1 for smoke, webhook and alert tests."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from testkit.serving import serving

# path -> (status, body)
Routes = dict[str, tuple[int, str]]


@dataclass
class Recorder:
    """What a server received, plus how many POSTs it should fail before succeeding."""

    fail_first: int = 0
    posts: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(routes: Routes, rec: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            with rec.lock:
                rec.gets.append(self.path)
            status, body = routes.get(self.path, (404, "not found"))
            self._answer(status, body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            with rec.lock:
                rec.posts.append((self.path, dict(self.headers), payload))
                failing = len(rec.posts) <= rec.fail_first
            self._answer(503 if failing else 200, "busy" if failing else "ok")

        def _answer(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", body)  # a redirect route's body is its target
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def http_server(
    routes: Routes | None = None, rec: Recorder | None = None, port: int = 0
) -> Iterator[tuple[str, Recorder]]:
    """Serve `routes` on 127.0.0.1; yield (base URL, recorder)."""
    rec = rec or Recorder()
    with serving(_handler(routes or {}, rec), port) as base:
        yield base, rec


@contextmanager
def trickling_server(head: bytes, pause_s: float) -> Iterator[str]:
    """Answer every GET with a 200 whose body is `head` and then one more byte every
    `pause_s` seconds, without end: a service no per-read timeout ever cuts off.
    Yields the base URL."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body ends when the server closes
            try:
                self.wfile.write(head)
                while not stop.wait(pause_s):
                    self.wfile.write(b" ")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up, as it should

    with serving(Handler) as base:
        try:
            yield base
        finally:
            stop.set()


def healthy_routes(prefix: str = "") -> Routes:
    return {
        f"{prefix}/health": (200, "ok"),
        f"{prefix}/status": (200, "{}"),
        f"{prefix}/queue": (200, '{"serial_gate": {"busy": false}}'),
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GitHttpLog:
    """Every request the git server got: (method, path, whether it carried the user's
    credentials)."""

    requests: list[tuple[str, str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def git_http_server(root: Path, user: str, password: str) -> Iterator[tuple[str, GitHttpLog]]:
    """git's smart HTTP protocol (`git http-backend` as a CGI) for the bare repositories
    under `root`, on 127.0.0.1, behind basic auth as `user`:`password` (every request,
    fetch and push). Yields (base URL without credentials, request log)."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    log = GitHttpLog()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            authorized = self.headers.get("Authorization") == expected
            with log.lock:
                log.requests.append((self.command, self.path, authorized))
            if not authorized:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REMOTE_USER": user,  # lets http-backend take pushes
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            done = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            )
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(": ")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    with serving(Handler) as base:
        yield base, log
