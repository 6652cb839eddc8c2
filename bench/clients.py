"""The bench's own HTTP/1.1 clients on raw sockets: transfers, slow readers, concurrent waits.

Each reads or writes in 64 KiB blocks, counts the bytes and checks them against
what was promised, so a short body is an error, never a fast result. Given a CA
(``ca``), they speak HTTPS (through Caddy), checking the certificate against it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Bytes per socket read or write.
BLOCK = 64 * 1024
#: Seconds any single socket operation may take before the run fails.
SOCKET_TIMEOUT = 60.0
#: Largest response head read.
MAX_HEAD = 64 * 1024


class HTTPError(Exception):
    """A response was not what the bench asked for."""


@dataclass(frozen=True)
class Head:
    status: int
    headers: list[tuple[str, str]]

    def value(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


class Connection:
    """One TCP connection to 127.0.0.1:``port``, with a read buffer; TLS for ``host``
    (its name without the port) checked against ``ca``, when given."""

    def __init__(
        self,
        port: int,
        *,
        rcvbuf: int | None = None,
        timeout: float = SOCKET_TIMEOUT,
        ca: Path | None = None,
        host: str = "",
    ):
        self.sock: socket.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                # Before connect, so the TCP window is small from the first segment.
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect(("127.0.0.1", port))
            if ca is not None:
                context = ssl.create_default_context(cafile=str(ca))
                context.set_alpn_protocols(["http/1.1"])
                server_name = host.rpartition(":")[0] if ":" in host else host
                self.sock = context.wrap_socket(self.sock, server_hostname=server_name)
        except BaseException:
            self.sock.close()
            raise
        self.buffer = bytearray()
        self.block = bytearray(BLOCK)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_head(self, method: str, path: str, host: str, extra: str = "") -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n"
        self.sock.sendall(head.encode("latin-1"))

    def _fill(self) -> int:
        n = self.sock.recv_into(self.block)
        if n == 0:
            raise HTTPError("connection closed by the server")
        self.buffer += memoryview(self.block)[:n]
        return n

    def read_head(self) -> Head:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise HTTPError("response head too large")
            self._fill()
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HTTPError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return Head(int(parts[1]), headers)

    def read_line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise HTTPError("line too long")
            self._fill()
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def read_some(self, limit: int) -> int:
        """Consume up to ``limit`` body bytes; return how many (at least 1)."""
        if not self.buffer:
            self._fill()
        taken = min(limit, len(self.buffer))
        del self.buffer[:taken]
        return taken

    def read_text(self, head: Head, limit: int = MAX_HEAD) -> bytes:
        """Read a small whole body (Content-Length or chunked)."""
        out = bytearray()

        def keep(size: int) -> None:
            while size > 0:
                if not self.buffer:
                    self._fill()
                taken = min(size, len(self.buffer))
                out.extend(self.buffer[:taken])
                del self.buffer[:taken]
                size -= taken
                if len(out) > limit:
                    raise HTTPError("response body too large")

        _walk_body(self, head, keep)
        return bytes(out)

    def skip_body(self, head: Head, pace: Callable[[int], None] | None = None) -> int:
        """Read and drop the body; call ``pace(bytes_so_far)`` after each read. Return its size."""
        total = 0

        def drop(size: int) -> None:
            nonlocal total
            while size > 0:
                taken = self.read_some(min(size, BLOCK))
                size -= taken
                total += taken
                if pace is not None:
                    pace(total)

        _walk_body(self, head, drop)
        return total


def _walk_body(conn: Connection, head: Head, consume: Callable[[int], None]) -> None:
    """Hand the body's data sizes to ``consume``, undoing chunked coding (RFC 9112 7.1)."""
    if head.status in (204, 304):
        return
    length = head.value("Content-Length")
    if length is not None:
        consume(int(length))
        return
    if "chunked" not in (head.value("Transfer-Encoding") or "").lower():
        raise HTTPError("response is neither Content-Length nor chunked")
    while True:
        size = int(conn.read_line().split(b";", 1)[0].strip(), 16)
        if size == 0:
            while conn.read_line():  # trailer fields, then the empty line
                pass
            return
        consume(size)
        if conn.read_line():
            raise HTTPError("chunk not followed by CRLF")


def get(
    port: int, host: str, path: str = "/", timeout: float = 10.0, ca: Path | None = None
) -> tuple[int, bytes]:
    """One GET on a fresh connection; return its status and (small) body."""
    with Connection(port, timeout=timeout, ca=ca, host=host) as conn:
        conn.send_head("GET", path, host, "Connection: close\r\n")
        head = conn.read_head()
        return head.status, conn.read_text(head)


@dataclass(frozen=True)
class Transfer:
    bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6


def download(port: int, host: str, size: int, ca: Path | None = None) -> Transfer:
    """GET ``/bytes/<size>`` and read it all; check the status and the byte count."""
    with Connection(port, ca=ca, host=host) as conn:
        started = time.perf_counter()
        conn.send_head("GET", f"/bytes/{size}", host)
        head = conn.read_head()
        if head.status != 200:
            raise HTTPError(f"download answered {head.status}: {conn.read_text(head)[:200]!r}")
        got = conn.skip_body(head)
        seconds = time.perf_counter() - started
    if got != size:
        raise HTTPError(f"download delivered {got} bytes, not {size}")
    return Transfer(got, seconds)


def upload(port: int, host: str, size: int, ca: Path | None = None) -> Transfer:
    """POST ``size`` bytes to ``/upload``; check the upstream counted every one."""
    block = memoryview(b"u" * BLOCK)
    with Connection(port, ca=ca, host=host) as conn:
        started = time.perf_counter()
        conn.send_head("POST", "/upload", host, f"Content-Length: {size}\r\n")
        left = size
        while left > 0:
            step = min(left, BLOCK)
            conn.sock.sendall(block[:step])
            left -= step
        head = conn.read_head()
        body = conn.read_text(head)
        seconds = time.perf_counter() - started
    if head.status != 200 or body != str(size).encode():
        raise HTTPError(f"upload answered {head.status} {body[:200]!r}, expected {size}")
    return Transfer(size, seconds)


@dataclass(frozen=True)
class SlowRead:
    bytes: int
    seconds: float
    #: Whether the reader stopped at its time cap before the end of the body.
    capped: bool

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6


def slow_download(
    port: int,
    host: str,
    size: int,
    *,
    rate: float,
    cap_seconds: float,
    rcvbuf: int,
    tick: Callable[[], None],
) -> SlowRead:
    """GET ``/bytes/<size>`` reading at ``rate`` bytes/s for at most ``cap_seconds``.

    ``tick`` is called after every read (the caller samples memory there). At the
    cap the connection is closed: the server must then drop the rest of the body.
    """

    class _Capped(Exception):
        pass

    with Connection(port, rcvbuf=rcvbuf) as conn:
        conn.send_head("GET", f"/bytes/{size}", host)
        head = conn.read_head()
        if head.status != 200:
            raise HTTPError(f"slow download answered {head.status}")
        started = time.perf_counter()
        total = 0

        def pace(done: int) -> None:
            nonlocal total
            total = done
            tick()
            now = time.perf_counter()
            if now - started >= cap_seconds:
                raise _Capped
            due = started + done / rate
            if due > now:
                time.sleep(min(due - now, cap_seconds))

        try:
            got = conn.skip_body(head, pace)
        except _Capped:
            return SlowRead(total, time.perf_counter() - started, capped=True)
    if got != size:
        raise HTTPError(f"slow download delivered {got} bytes, not {size}")
    return SlowRead(got, time.perf_counter() - started, capped=False)


def concurrent_gets(port: int, host: str, path: str, count: int, timeout: float) -> float:
    """Send ``count`` GETs at once on their own connections; return the wall time for all.

    Every connection is open before the clock starts; each answer must be a 200.
    """
    starts: list[float] = []
    barrier = threading.Barrier(
        count + 1, action=lambda: starts.append(time.perf_counter()), timeout=timeout
    )
    finished: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            with Connection(port, timeout=timeout) as conn:
                barrier.wait()
                conn.send_head("GET", path, host, "Connection: close\r\n")
                head = conn.read_head()
                conn.read_text(head)
                done = time.perf_counter()
            with lock:
                if head.status == 200:
                    finished.append(done)
                else:
                    errors.append(f"status {head.status}")
        except (OSError, HTTPError, threading.BrokenBarrierError) as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            barrier.abort()

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    for thread in threads:
        thread.join(timeout + 1)
    if errors or len(finished) != count or not starts:
        raise HTTPError(f"{count - len(finished)} of {count} requests failed: {errors[:3]}")
    return max(finished) - starts[0]


@dataclass(frozen=True)
class Latencies:
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def sequential_gets(port: int, host: str, seconds: float, ca: Path | None = None) -> Latencies:
    """GET ``/`` one after another on one keep-alive connection; time each answer.

    A cross-check of wrk's one-connection latency, measured by the bench itself.
    """
    latencies: list[float] = []
    with Connection(port, ca=ca, host=host) as conn:
        end = time.perf_counter() + seconds
        while (started := time.perf_counter()) < end:
            conn.send_head("GET", "/", host)
            head = conn.read_head()
            conn.read_text(head)
            if head.status != 200:
                raise HTTPError(f"sequential GET answered {head.status}")
            latencies.append(time.perf_counter() - started)
    if not latencies:
        raise HTTPError("no request completed")
    latencies.sort()
    n = len(latencies)
    return Latencies(
        requests=n,
        p50_ms=latencies[n // 2] * 1e3,
        p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1e3,
        max_ms=latencies[-1] * 1e3,
    )


def fill(
    socks: list[socket.socket], limit: int, quiet: float = 2.0, deadline: float = 120.0
) -> int:
    """Send on every socket (at most ``limit`` bytes each) until none takes a byte for
    ``quiet`` seconds; return the bytes sent in all."""
    for sock in socks:
        sock.setblocking(False)
    left = {sock: limit for sock in socks}
    block = bytes(BLOCK)
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        waiting = [sock for sock, n in left.items() if n]
        _, writable, _ = select.select([], waiting, [], quiet) if waiting else ([], [], [])
        if not writable:
            return sum(limit - n for n in left.values())
        for sock in writable:
            with contextlib.suppress(BlockingIOError):
                left[sock] -= sock.send(block[: left[sock]])
    raise HTTPError(f"uploads still moving after {deadline} s")
