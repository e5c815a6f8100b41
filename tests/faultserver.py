"""A raw TCP server on 127.0.0.1 that misbehaves on purpose, for the network fault tests.

Where :class:`tests.sitegen.TestSite` speaks proper HTTP, this one hands every accepted
connection to a *behaviour*: a function ``(conn, request) -> None`` that writes whatever it
likes (or nothing) and may reset the connection. The request is read up to the end of its
headers (and its body, when it has a Content-Length) before the behaviour runs::

    with FaultServer(stall_after(HEADERS_200)) as server:
        fetch(server.url("/x"))
        assert server.connections == 1

Behaviours here: :func:`hang` (accept, never answer), :func:`stall_after` (send some bytes,
then nothing), :func:`reset_after` (send some bytes, then a TCP RST: ``SO_LINGER`` 0 and
close), :func:`drip` (send bytes one at a time, slowly), :func:`reply` (a normal response).
:func:`route` picks a behaviour by request path. Every behaviour returns when the server
stops, so a test never leaves threads behind that outlive it.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

__all__ = [
    "FaultServer",
    "HEADERS_200",
    "Request",
    "drip",
    "hang",
    "http_response",
    "reply",
    "reset",
    "reset_after",
    "route",
    "stall_after",
]


class Request:
    """What the client sent: the request line, headers (lower-case names) and body."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.line = lines[0] if lines else ""
        parts = self.line.split(" ")
        self.method = parts[0] if parts else ""
        self.path = parts[1] if len(parts) > 1 else ""
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()


Behaviour = Callable[[socket.socket, Request, threading.Event], None]


def http_response(
    status: int = 200,
    body: bytes = b"<html><body>ok</body></html>",
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/html"),),
    *,
    length: int | None = None,
) -> bytes:
    """A whole HTTP/1.1 response (Content-Length ``length``, default the body's)."""
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


HEADERS_200 = http_response(body=b"", length=10_000)  # headers promising a body that never comes


def reset(conn: socket.socket) -> None:
    """Abort the connection: the peer gets a TCP RST instead of a FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def hang(conn: socket.socket, request: Request, stop: threading.Event) -> None:
    """Accept and read the request, then say nothing until the server stops."""
    stop.wait()


def stall_after(data: bytes) -> Behaviour:
    """Send ``data`` (e.g. the status line and headers), then nothing until the server stops."""

    def behaviour(conn: socket.socket, request: Request, stop: threading.Event) -> None:
        conn.sendall(data)
        stop.wait()

    return behaviour


def reset_after(data: bytes) -> Behaviour:
    """Send ``data``, wait a moment (so it is on the wire), then reset the connection."""

    def behaviour(conn: socket.socket, request: Request, stop: threading.Event) -> None:
        conn.sendall(data)
        time.sleep(0.05)
        reset(conn)

    return behaviour


def drip(data: bytes, interval_s: float) -> Behaviour:
    """Send ``data`` one byte every ``interval_s``: each byte comes well within any read
    timeout, the whole takes ``len(data) * interval_s``."""

    def behaviour(conn: socket.socket, request: Request, stop: threading.Event) -> None:
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])
            if stop.wait(interval_s):
                return

    return behaviour


def reply(data: bytes) -> Behaviour:
    """Send ``data`` (a whole response) and close."""

    def behaviour(conn: socket.socket, request: Request, stop: threading.Event) -> None:
        conn.sendall(data)

    return behaviour


def route(routes: dict[str, Behaviour], default: Behaviour | None = None) -> Behaviour:
    """Pick a behaviour by the request path (exact match, query included); ``default`` (a 404
    response) otherwise."""
    fallback = default or reply(http_response(404, b"not found", (("Content-Type", "text/plain"),)))

    def behaviour(conn: socket.socket, request: Request, stop: threading.Event) -> None:
        routes.get(request.path, fallback)(conn, request, stop)

    return behaviour


class FaultServer:
    """Accepts connections on ``127.0.0.1`` and lets ``behaviour`` answer each (one thread
    per connection). ``requests`` logs every request read, in arrival order."""

    __test__ = False

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[Request] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="faultserver", daemon=True)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def __enter__(self) -> FaultServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            raw = b""
            while b"\r\n\r\n" not in raw:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                raw += chunk
            request = Request(raw)
            length = int(request.headers.get("content-length", "0") or 0)
            while len(request.body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                request.body += chunk
            with self._lock:
                self.requests.append(request)
            self.behaviour(conn, request, self._stop)
        except OSError:
            pass  # the client gave up: expected here
        finally:
            try:
                conn.close()
            except OSError:
                pass
