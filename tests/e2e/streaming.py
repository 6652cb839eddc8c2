"""Large and slow bodies for the streaming tests, never held whole in the test process.

Bodies are generated in chunks by :func:`pattern` and compared by digest; slow
readers and writers are paced by :class:`Pacer`; ``http.client`` reads responses
because it reports a body that ends early (``IncompleteRead``) or a reset
connection, which is exactly what the abort tests look for.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator

from . import http1
from .localserver import Incoming

#: Size of one generated chunk.
CHUNK = 64 * 1024
#: What a public client may see when a response is aborted: a reset, a body that
#: ends before its length or final chunk. A timeout (a hang) is not among them.
ABORTED = (ConnectionError, http.client.HTTPException)
CHUNKED = [("Transfer-Encoding", "chunked")]


def pattern(total: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """Deterministic bytes in chunks; each chunk starts with its index, so order shows."""
    block = bytes(range(256)) * (chunk // 256 + 1)
    index = 0
    produced = 0
    while produced < total:
        size = min(chunk, total - produced)
        yield (index.to_bytes(8, "big") + block)[:size]
        index += 1
        produced += size


def pattern_digest(total: int) -> str:
    digest = hashlib.sha256()
    for chunk in pattern(total):
        digest.update(chunk)
    return digest.hexdigest()


class Pacer:
    """Holds a reader or writer to about ``rate`` bytes per second.

    The waits throttle a transfer on purpose; they synchronise nothing.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.done = 0

    def account(self, size: int) -> None:
        self.done += size
        ahead = self.done / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)


def connect(port: int, *, timeout: float, rcvbuf: int | None = None) -> socket.socket:
    """A TCP connection to 127.0.0.1; a small ``rcvbuf`` makes a slow reader felt at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            # Before connect(), so the advertised TCP window is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def http_connection(
    port: int, *, timeout: float, rcvbuf: int | None = None
) -> http.client.HTTPConnection:
    """An ``http.client`` connection on a socket from :func:`connect`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = connect(port, timeout=timeout, rcvbuf=rcvbuf)
    return conn


def read_digest(response: http.client.HTTPResponse, limit: int) -> tuple[int, str]:
    """Read the whole body in chunks; return its size and sha256. Raises on an abort."""
    digest = hashlib.sha256()
    total = 0
    while chunk := response.read1(CHUNK):
        digest.update(chunk)
        total += len(chunk)
        assert total <= limit, f"body longer than {limit} bytes"
    if response.length:  # read1() returns b"" when a Content-Length body stops short
        raise http.client.IncompleteRead(b"", response.length)
    return total, digest.hexdigest()


# -- the local server's side: StreamHandlers for LocalServer.stream() ------------


def _head(status: str, headers: list[tuple[str, str]]) -> bytes:
    return http1.encode_head(f"HTTP/1.1 {status}", headers)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def body_pieces(incoming: Incoming) -> Iterator[bytes]:
    """The request body in pieces as it arrives (Content-Length or chunked)."""
    rfile = incoming.rfile
    if http1.is_chunked(incoming.headers):
        while size := int(http1.read_line(rfile).split(b";", 1)[0], 16):
            while size:
                piece = rfile.read(min(size, CHUNK))
                if not piece:
                    raise http1.PeerClosed("request body ended early")
                size -= len(piece)
                yield piece
            http1.read_line(rfile)
        for _ in range(http1.MAX_HEADERS + 1):  # the trailer section
            if not http1.read_line(rfile):
                return
        raise http1.FramingError("too many trailer lines")
    remaining = int(http1.value(incoming.headers, "Content-Length") or 0)
    while remaining:
        piece = rfile.read1(min(remaining, CHUNK))
        if not piece:
            raise http1.PeerClosed("request body ended early")
        remaining -= len(piece)
        yield piece


class Download:
    """Answers with ``total`` bytes of :func:`pattern`, Content-Length set."""

    def __init__(self, total: int, rate: float | None = None) -> None:
        self.total = total
        self.rate = rate

    def __call__(self, incoming: Incoming) -> bool:
        incoming.wfile.write(_head("200 OK", [("Content-Length", str(self.total))]))
        pacer = Pacer(self.rate) if self.rate else None
        for chunk in pattern(self.total):
            if incoming.stopping.is_set():
                return False
            incoming.wfile.write(chunk)
            if pacer is not None:
                pacer.account(len(chunk))
        return True


class UploadSink:
    """Reads the request body (at ``rate`` if given) and answers its size and sha256."""

    def __init__(self, rate: float | None = None) -> None:
        self.rate = rate

    def __call__(self, incoming: Incoming) -> bool:
        digest = hashlib.sha256()
        total = 0
        pacer = Pacer(self.rate) if self.rate else None
        for piece in body_pieces(incoming):
            digest.update(piece)
            total += len(piece)
            if pacer is not None:
                pacer.account(len(piece))
        answer = f"{total} {digest.hexdigest()}".encode()
        head = _head("200 OK", [("Content-Length", str(len(answer)))])
        incoming.wfile.write(head + answer)
        return True


class Endless:
    """Streams a chunked event stream until a write fails, and records that it failed."""

    #: Longest the stream runs if nobody goes away: a bound, not a wait.
    LIMIT = 30.0

    def __init__(self) -> None:
        self.write_failed = threading.Event()

    def __call__(self, incoming: Incoming) -> bool:
        head = _head("200 OK", [("Content-Type", "text/event-stream"), *CHUNKED])
        incoming.wfile.write(head)
        ends = time.monotonic() + self.LIMIT
        try:
            while time.monotonic() < ends:
                incoming.wfile.write(_chunk(b"data: tick\n\n"))
                # Pacing the writes; a failed write ends the loop at once.
                if incoming.stopping.wait(0.02):
                    return False
        except OSError:
            self.write_failed.set()
        return False


class Events:
    """Sends ``count`` server-sent events ``interval`` seconds apart; records when."""

    def __init__(self, count: int, interval: float) -> None:
        self.count = count
        self.interval = interval
        self.sent_at: list[float] = []

    def __call__(self, incoming: Incoming) -> bool:
        headers = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
        incoming.wfile.write(_head("200 OK", [*headers, *CHUNKED]))
        for i in range(self.count):
            if i and incoming.stopping.wait(self.interval):  # pacing the events
                return False
            self.sent_at.append(time.monotonic())
            incoming.wfile.write(_chunk(f"id: {i}\ndata: event {i}\n\n".encode()))
        incoming.wfile.write(b"0\r\n\r\n")
        return True


class LateBody:
    """Sends the head at once and the body ``delay`` seconds later; records both times."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.head_sent_at = 0.0
        self.body_sent_at = 0.0

    def __call__(self, incoming: Incoming) -> bool:
        self.head_sent_at = time.monotonic()
        incoming.wfile.write(_head("200 OK", [("Content-Type", "text/plain"), *CHUNKED]))
        if incoming.stopping.wait(self.delay):  # the delay under test, not a synchronisation
            return False
        self.body_sent_at = time.monotonic()
        incoming.wfile.write(_chunk(b"late") + b"0\r\n\r\n")
        return True


class Truncated:
    """Sends part of a response, then closes the connection without a clean end.

    With ``promised`` the head carries that Content-Length; without, the body is
    chunked and the final chunk never comes.
    """

    def __init__(self, sent: int, promised: int | None = None) -> None:
        self.sent = sent
        self.promised = promised

    def __call__(self, incoming: Incoming) -> bool:
        if self.promised is None:
            incoming.wfile.write(_head("200 OK", CHUNKED))
            for chunk in pattern(self.sent):
                incoming.wfile.write(_chunk(chunk))
        else:
            incoming.wfile.write(_head("200 OK", [("Content-Length", str(self.promised))]))
            for chunk in pattern(self.sent):
                incoming.wfile.write(chunk)
        return False  # the local server closes the connection
