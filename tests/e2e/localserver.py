"""The developer's local server, as the tunnel sees it: real sockets, recorded requests.

It reads each request itself (Content-Length or chunked) so the test sees the
exact target, header lines and body bytes the tunnel client sent, and answers
from a per-path table of :class:`Reply` objects written byte for byte.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from . import http1
from .http1 import Headers

NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Reply:
    """How the local server answers one path."""

    status: int = 200
    reason: str = "OK"
    #: Header lines written verbatim, in this order.
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    #: Append ``Content-Length: len(body)`` unless chunked, closing, or already given.
    content_length: bool = True
    #: Send the body chunked (adds ``Transfer-Encoding: chunked``) in pieces of chunk_size.
    chunked: bool = False
    chunk_size: int = 16 * 1024
    #: Close the connection after the body (with content_length=False: close-delimited).
    close: bool = False
    #: Seconds to wait before answering: a slow upstream, not synchronisation.
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived at the local server."""

    method: str
    target: str
    version: str
    headers: Headers
    body: bytes
    #: "length", "chunked" or "none" (no body framing header at all).
    framing: str
    connection: int
    arrived: float = field(compare=False)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def value(self, name: str) -> str | None:
        return http1.value(self.headers, name)

    def values(self, name: str) -> list[str]:
        return http1.values(self.headers, name)


@dataclass(frozen=True)
class Incoming:
    """A request whose body is still on the connection, for a :data:`StreamHandler`."""

    method: str
    target: str
    headers: Headers
    rfile: BinaryIO
    wfile: BinaryIO
    #: Set when the local server stops: a long handler must return soon after.
    stopping: threading.Event


#: Answers one request itself: reads the body from ``rfile``, writes the whole
#: response to ``wfile`` and returns whether the connection may carry another request.
StreamHandler = Callable[[Incoming], bool]


class _Handler(socketserver.StreamRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        local = self.server.owner
        conn_id = local._connection_opened(self.request)
        try:
            # One request per iteration; ends on close, error or server stop.
            while not local.stopping.is_set():
                if not self._one_request(local, conn_id):
                    return
        except (OSError, http1.FramingError):
            return
        finally:
            local._connection_closed(self.request)

    def _one_request(self, local: LocalServer, conn_id: int) -> bool:
        try:
            start, headers = http1.read_head(self.rfile)
        except http1.PeerClosed:
            return False
        method, target, version = start.split(" ", 2)
        handler = local.handler_for(target.split("?", 1)[0])
        if handler is not None:
            local._record(
                Recorded(
                    method,
                    target,
                    version,
                    headers,
                    b"",
                    _framing(headers),
                    conn_id,
                    time.monotonic(),
                )
            )
            incoming = Incoming(method, target, headers, self.rfile, self.wfile, local.stopping)
            return handler(incoming)
        if http1.is_chunked(headers):
            body, framing = http1.read_chunked(self.rfile), "chunked"
        elif (length := http1.value(headers, "Content-Length")) is not None:
            body, framing = http1.read_exact(self.rfile, int(length)), "length"
        else:
            body, framing = b"", "none"
        local._record(
            Recorded(method, target, version, headers, body, framing, conn_id, time.monotonic())
        )
        reply = local.reply_for(target.split("?", 1)[0])
        if reply.delay and local.stopping.wait(reply.delay):
            return False
        closing = reply.close or any(
            v.lower() == "close" for v in http1.values(headers, "Connection")
        )
        self.wfile.write(_encode_reply(reply, method))
        self.wfile.flush()
        return not closing


def _framing(headers: Headers) -> str:
    if http1.is_chunked(headers):
        return "chunked"
    return "length" if http1.value(headers, "Content-Length") is not None else "none"


def _encode_reply(reply: Reply, method: str) -> bytes:
    headers = list(reply.headers)
    bodiless_status = reply.status in NO_BODY_STATUSES or 100 <= reply.status < 200
    if reply.chunked and not bodiless_status:
        headers.append(("Transfer-Encoding", "chunked"))
    elif (
        reply.content_length
        and not bodiless_status
        and http1.value(headers, "Content-Length") is None
    ):
        headers.append(("Content-Length", str(len(reply.body))))
    head = http1.encode_head(f"HTTP/1.1 {reply.status} {reply.reason}", headers)
    if method == "HEAD" or bodiless_status:
        return head
    if reply.chunked:
        size = reply.chunk_size
        pieces = [reply.body[i : i + size] for i in range(0, len(reply.body), size)]
        return head + http1.encode_chunked(pieces)
    return head + reply.body


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, owner: LocalServer, host: str) -> None:
        self.owner = owner
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, 0), _Handler)


class LocalServer:
    """A threaded HTTP/1.1 keep-alive server on ``host`` (127.0.0.1, or ::1 as recent
    dev servers) that records every request."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.stopping = threading.Event()
        self._lock = threading.Condition()
        self._requests: list[Recorded] = []
        self._replies: dict[str, Reply] = {}
        self._handlers: dict[str, StreamHandler] = {}
        self._sockets: set[socket.socket] = set()
        self._opened = 0
        self._tcp = _TCPServer(self, host)
        self.port: int = self._tcp.server_address[1]
        self._thread = threading.Thread(
            target=self._tcp.serve_forever, kwargs={"poll_interval": 0.1}, name="local-server"
        )
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._tcp.shutdown()
        self._tcp.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)

    def route(self, path: str, reply: Reply) -> None:
        """Answer requests for ``path`` (the target without its query) with ``reply``."""
        with self._lock:
            self._replies[path] = reply

    def stream(self, path: str, handler: StreamHandler) -> None:
        """Let ``handler`` answer requests for ``path`` itself, body unread.

        Their requests are recorded with an empty ``body``: the handler reads it.
        """
        with self._lock:
            self._handlers[path] = handler

    def handler_for(self, path: str) -> StreamHandler | None:
        with self._lock:
            return self._handlers.get(path)

    def reply_for(self, path: str) -> Reply:
        with self._lock:
            return self._replies.get(path, Reply())

    def requests(self, predicate: Callable[[Recorded], bool] = lambda r: True) -> list[Recorded]:
        with self._lock:
            return [r for r in self._requests if predicate(r)]

    def wait_for(self, predicate: Callable[[Recorded], bool], timeout: float = 10.0) -> Recorded:
        """Return the first recorded request matching ``predicate``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for recorded in self._requests:
                    if predicate(recorded):
                        return recorded
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "\n".join(f"  {r.method} {r.target}" for r in self._requests[-20:])
                    raise AssertionError(
                        f"no matching request reached the local server in {timeout} s; "
                        f"last seen:\n{seen}"
                    )
                self._lock.wait(remaining)

    def wait_count(
        self, predicate: Callable[[Recorded], bool], count: int, timeout: float = 10.0
    ) -> list[Recorded]:
        """Wait until ``count`` recorded requests match ``predicate``; return them all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(found := [r for r in self._requests if predicate(r)]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(found)} matching requests reached the local server in "
                        f"{timeout} s, not {count}"
                    )
                self._lock.wait(remaining)
            return found

    def only(self, path: str, timeout: float = 10.0) -> Recorded:
        """The one request for ``path`` (target without query); fail if there were more."""
        first = self.wait_for(lambda r: r.path == path, timeout)
        found = self.requests(lambda r: r.path == path)
        assert len(found) == 1, f"{len(found)} requests reached the local server for {path}"
        return first

    @property
    def connections_opened(self) -> int:
        """How many connections the server has accepted so far."""
        with self._lock:
            return self._opened

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self._requests.append(recorded)
            self._lock.notify_all()

    def _connection_opened(self, sock: socket.socket) -> int:
        with self._lock:
            self._sockets.add(sock)
            self._opened += 1
            return self._opened

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
