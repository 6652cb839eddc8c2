"""Talk HTTP/1.1 to the local server, exactly as the public client talked to us.

``http.client`` is used directly rather than a higher-level library because it
adds nothing on its own: no default headers, no decompression, no redirects, and
the request target is sent as given on a connection to the configured address
only, so no path can send the client to another host.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import protocol
from .local import LocalAddress, LocalHTTPConnection, describe, unreachable
from .protocol import CHUNK_SIZE, Headers, ProtocolError

_OBS_FOLD = re.compile(r"\r?\n[ \t]+")


class LocalError(Exception):
    """The local server could not be reached or broke the exchange.

    ``refused``: nothing answered at the local address at all (not running).
    """

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class LocalResponse:
    status: int
    headers: Headers
    body: bool


#: Interim (1xx) heads skipped before a final one; more is a local server gone wrong.
MAX_INTERIM_RESPONSES = 32


class FinalResponse(http.client.HTTPResponse):
    """http.client's response, reading past interim heads to the final one.

    RFC 9110 section 15.2: 1xx heads (103 Early Hints, 102 Processing) come before
    the final response; http.client skips only 100 and would hand on a 103 as the
    answer, which the tunnel refuses. They are dropped here: ASGI, and so daphne,
    has no way to send an interim head to the public client.
    """

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(MAX_INTERIM_RESPONSES):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 102 <= status < 200:
                return version, status, reason
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]
        raise http.client.HTTPException("too many interim responses")


class ConnectionPool:
    """Keep-alive connections to the one local address, at most ``size`` idle ones."""

    def __init__(self, address: LocalAddress, size: int) -> None:
        self.address = address
        self._size = size
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def take(self) -> tuple[http.client.HTTPConnection, bool]:
        """Return a connection and whether it was reused."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if _still_open(conn):
                    return conn, True
                conn.close()
        conn = LocalHTTPConnection(self.address)
        conn.response_class = FinalResponse
        return conn, False

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has been closed by the server."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class Exchange:
    """One request/response with the local server, driven by a worker thread."""

    def __init__(self, pool: ConnectionPool, request: protocol.Request) -> None:
        self._pool = pool
        self._request = request
        self._conn: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None
        self._aborted = False

    def send_request(self, body_chunks: Iterator[bytes], on_chunk_sent: Callable[[], None]) -> None:
        """Send the head and stream the body; ``on_chunk_sent`` runs after each chunk."""
        request = self._request
        headers = self._pool.address.headers(list(request.headers))
        # Keep the public client's framing: Content-Length bodies go as they came;
        # a body without one (it came chunked) is chunked again on this hop.
        chunked = request.body and not protocol.header_values(headers, "content-length")
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        for attempt in (1, 2):
            conn, reused = self._pool.take()
            self._conn = conn
            try:
                conn.putrequest(
                    request.method, request.path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders()
                break
            except (OSError, http.client.HTTPException, ValueError) as exc:
                conn.close()
                # A reused keep-alive connection may have been closed under us: one
                # fresh try, which is safe because no body byte has been sent yet.
                if not (reused and attempt == 1):
                    address = self._pool.address.authority
                    raise LocalError(describe(exc, address), unreachable(exc)) from exc
        if not request.body:
            return
        try:
            for chunk in body_chunks:
                if chunked:
                    if chunk:
                        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    conn.send(chunk)
                on_chunk_sent()
            if chunked:
                conn.send(b"0\r\n\r\n")
        except OSError as exc:
            raise LocalError(describe(exc)) from exc

    def receive_response(self) -> LocalResponse:
        assert self._conn is not None
        try:
            response = self._conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise LocalError(describe(exc)) from exc
        self._response = response
        headers = [(name, _OBS_FOLD.sub(" ", value)) for name, value in response.msg.items()]
        headers = _checked_framing(headers, response)
        bodyless = (
            self._request.method == "HEAD" or response.status in (204, 304) or response.length == 0
        )
        return LocalResponse(response.status, headers, body=not bodyless)

    def body_waiting(self) -> bool:
        """Whether some of the body has arrived already, so reading it will not wait."""
        conn, response = self._conn, self._response
        if conn is None or conn.sock is None or response is None or response.fp is None:
            return False
        timeout = conn.sock.gettimeout()
        conn.sock.settimeout(0.0)  # peek must not wait for the local server
        try:
            return bool(response.fp.peek(1))
        except OSError:
            return False
        finally:
            conn.sock.settimeout(timeout)

    def body_chunks(self) -> Iterator[tuple[bytes, bool]]:
        """Yield (chunk, is_last) as the local server writes them."""
        response = self._response
        assert response is not None
        while True:
            try:
                chunk = response.read1(CHUNK_SIZE)
            except (OSError, http.client.HTTPException) as exc:
                raise LocalError(describe(exc)) from exc
            if not chunk:
                if response.length:  # Content-Length promised more than arrived
                    raise LocalError("local server closed the connection mid-response")
                yield b"", True
                return
            # When the length is known, flag the last chunk instead of sending an
            # empty one after it.
            last = response.length == 0
            yield chunk, last
            if last:
                return

    def finish(self) -> None:
        """Return the connection to the pool if the exchange left it reusable."""
        conn, response = self._conn, self._response
        self._conn = None
        if conn is None:
            return
        if response is not None and response.length == 0 and not self._aborted:
            response.read()  # bodyless: marks the response done so the socket is reusable
        if (
            not self._aborted
            and response is not None
            and response.isclosed()
            and not response.will_close
        ):
            self._pool.give_back(conn)
        else:
            conn.close()

    def abort(self) -> None:
        """Drop the local connection now (from any thread): the local server sees a disconnect."""
        self._aborted = True
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)


def _checked_framing(headers: Headers, response: http.client.HTTPResponse) -> Headers:
    """Refuse a response whose body length is unknowable; drop a Content-Length that
    does not describe the bytes we pass on.

    http.client reads a chunked body as its decoded bytes and ignores Content-Length
    then (RFC 9112 section 6.3), so such a length would be a lie to the server.
    Any other transfer coding it would read as raw bytes until close: refused.
    """
    try:
        protocol.declared_length(headers)
    except ProtocolError as exc:
        raise LocalError(f"local server sent an invalid response ({exc})") from exc
    if protocol.header_values(headers, "transfer-encoding"):
        if not response.chunked:
            raise LocalError("local server used a transfer coding other than chunked")
        return [(name, value) for name, value in headers if name.lower() != "content-length"]
    return headers
