"""A TLS socket that several threads may read and write: the tunnel's reader and its
senders (stream workers, pings) over ``wss://``.

OpenSSL's SSL object must not be used by two threads at once, and CPython releases
the GIL around ``SSL_read`` and ``SSL_write``: a thread blocked in ``recv()`` while
another ``send()``s corrupts the connection's state, which shows as a spurious end of
stream (``recv()`` returns ``b""``) or a bad record MAC, and the connection is lost
(issue 12: tunnels behind Caddy dropped a connection every few seconds under load, and
no 200 MB transfer got through). Plain TCP sockets have no such state; they are left
as they are.

:class:`SharedTLSSocket` takes one lock around every read and write of the SSL
object, and never holds it while waiting: the socket is non-blocking underneath, and
a reader with nothing to read waits for readability (``select``) with the lock
released, so senders go on meanwhile. The timeout websocket-client sets is kept and
enforced here.
"""

from __future__ import annotations

import selectors
import ssl
import threading
import time
from typing import Any

import websocket


class SharedTLSSocket:
    """``sock`` (non-blocking from now on) behind one lock; otherwise the same socket."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._timeout: float | None = sock.gettimeout()
        sock.setblocking(False)

    # -- what websocket-client calls -------------------------------------------------

    def gettimeout(self) -> float | None:
        return self._timeout

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the stream; ``socket.timeout``
        after the timeout with nothing read."""
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            with self._lock:
                try:
                    return self._sock.recv(size)
                except ssl.SSLWantReadError:
                    wait = selectors.EVENT_READ
                except ssl.SSLWantWriteError:  # a renegotiation in TLS 1.2
                    wait = selectors.EVENT_WRITE
            self._wait(wait, deadline)

    def send(self, data: bytes | memoryview) -> int:
        """Bytes of ``data`` sent (at least one); ``socket.timeout`` after the timeout."""
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            with self._lock:
                try:
                    return self._sock.send(data)
                except ssl.SSLWantWriteError:
                    wait = selectors.EVENT_WRITE
                except ssl.SSLWantReadError:
                    wait = selectors.EVENT_READ
            # OpenSSL wants the same bytes again after WANT_WRITE: ``data`` is unchanged.
            self._wait(wait, deadline)

    def sendall(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(view) :]

    def _wait(self, event: int, deadline: float | None) -> None:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise TimeoutError("timed out")
        with selectors.DefaultSelector() as selector:
            try:
                selector.register(self._sock, event)
            except ValueError as exc:  # closed meanwhile (fileno -1)
                raise OSError("socket closed") from exc
            if not selector.select(timeout):
                raise TimeoutError("timed out")

    # -- everything else: the socket's own ----------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # fileno, shutdown, close, getpeername, _closed, ...: no SSL state involved
        # (shutdown() wakes a reader waiting for readability, as it would in recv()).
        return getattr(self._sock, name)


def share(ws: websocket.WebSocket) -> None:
    """Make ``ws``'s socket safe for one reader and several senders, if it is TLS."""
    if isinstance(ws.sock, ssl.SSLSocket):
        ws.sock = SharedTLSSocket(ws.sock)  # type: ignore[assignment]
