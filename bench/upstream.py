"""The bench's local upstream: a small, fast HTTP/1.1 keep-alive server on asyncio.

Run as ``python -m bench.upstream --port 0``; it prints ``Upstream listening on
127.0.0.1:PORT`` when ready. Routes:

- ``GET /`` answers ``hello`` (the small-GET figure);
- ``GET /bytes/N`` sends N bytes, pausing whenever the reader falls behind;
- ``GET /sleep/MS`` answers ``slept`` after MS milliseconds;
- ``POST /upload`` reads and drops the body (Content-Length or chunked) and
  answers with the number of bytes it received.

It parses just enough HTTP for the bench and answers anything else with 404. It
must never be the bottleneck: the bench measures it directly as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Any

#: Bytes handed to the transport per write of a large body.
WRITE_BLOCK = 256 * 1024
#: Transport buffer above which a large body waits for the reader (asyncio flow control).
HIGH_WATER = 1024 * 1024
#: Largest request head accepted; the bench's requests are far smaller.
MAX_HEAD = 64 * 1024

_BLOCK = b"x" * WRITE_BLOCK
_HELLO = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


def _response(status: bytes, body: bytes) -> bytes:
    head = b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
    return head % (status, len(body)) + body


class _BadRequest(Exception):
    pass


class UpstreamProtocol(asyncio.Protocol):
    """One connection: requests are handled in order; a slow one holds the next back."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        #: Body bytes still to read, for a Content-Length upload; -1 while chunked.
        self.remaining = 0
        self.chunk_left = 0
        self.in_body = False
        self.received = 0
        #: A response is being produced by a task; hold further input until it ends.
        self.busy = False
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.closed = False

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        if self.in_body and self.remaining > 0 and not self.buffer:
            # Fast path of an upload: count the bytes without copying them.
            taken = min(len(data), self.remaining)
            self.remaining -= taken
            self.received += taken
            if taken == len(data):
                if self.remaining == 0:
                    self._upload_done()
                return
            data = data[taken:]
            if self.remaining == 0:
                self._upload_done()
        self.buffer += data
        try:
            self._process()
        except (_BadRequest, ValueError) as exc:  # ValueError: a number that is not one
            self._fail(str(exc))

    # request handling

    def _process(self) -> None:
        while not self.busy and not self.closed:
            if self.in_body:
                if not self._consume_body():
                    return
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    raise _BadRequest("request head too large")
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            self._handle_head(head)

    def _handle_head(self, head: str) -> None:
        request_line, _, header_text = head.partition("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            raise _BadRequest("bad request line")
        method, target, _ = parts
        if method == "GET" and target == "/":
            self._write(_HELLO)
            return
        length = 0
        chunked = False
        for line in header_text.split("\r\n"):
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
        if method == "POST" and target == "/upload":
            self.in_body = True
            self.received = 0
            self.remaining = -1 if chunked else length
            self.chunk_left = 0
            if not chunked and length == 0:
                self._upload_done()
            return
        if length or chunked:
            raise _BadRequest("unexpected request body")
        if method == "GET" and target.startswith("/bytes/"):
            self._start(self._send_bytes(int(target[len("/bytes/") :])))
        elif method == "GET" and target.startswith("/sleep/"):
            self._start(self._sleep(int(target[len("/sleep/") :]) / 1000))
        else:
            self._write(_response(b"404 Not Found", b"not found\n"))

    def _consume_body(self) -> bool:
        """Eat body bytes from the buffer; False when more input is needed."""
        if self.remaining >= 0:
            taken = min(len(self.buffer), self.remaining)
            del self.buffer[:taken]
            self.remaining -= taken
            self.received += taken
            if self.remaining == 0:
                self._upload_done()
                return True
            return False
        # Chunked transfer coding (RFC 9112 section 7.1).
        while True:
            if self.chunk_left > 0:
                taken = min(len(self.buffer), self.chunk_left)
                del self.buffer[:taken]
                self.chunk_left -= taken
                self.received += taken
                if self.chunk_left > 0:
                    return False
                self.chunk_left = -2  # the CRLF after the chunk data
            if self.chunk_left == -2:
                if len(self.buffer) < 2:
                    return False
                del self.buffer[:2]
                self.chunk_left = 0
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return False
            line = bytes(self.buffer[:end]).split(b";", 1)[0].strip()
            del self.buffer[: end + 2]
            if self.chunk_left == -1:  # in the trailer section
                if not line:
                    self._upload_done()
                    return True
                continue
            size = int(line, 16)
            if size == 0:
                self.chunk_left = -1
                continue
            self.chunk_left = size

    def _upload_done(self) -> None:
        self.in_body = False
        self.remaining = 0
        self.chunk_left = 0
        self._write(_response(b"200 OK", b"%d" % self.received))

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.closed:
            self.transport.write(data)

    def _fail(self, reason: str) -> None:
        self._write(_response(b"400 Bad Request", reason.encode() + b"\n"))
        assert self.transport is not None
        self.transport.close()
        self.closed = True

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        self.busy = True
        task = asyncio.ensure_future(work)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[None]) -> None:
        self.busy = False
        if task.cancelled() or task.exception() is not None:
            if self.transport is not None:
                self.transport.abort()
            self.closed = True
            return
        try:
            self._process()
        except (_BadRequest, ValueError) as exc:  # ValueError: a number that is not one
            self._fail(str(exc))

    async def _send_bytes(self, size: int) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        self._write(head + b"Content-Length: %d\r\n\r\n" % size)
        view = memoryview(_BLOCK)
        left = size
        while left > 0 and not self.closed:
            await self.can_write.wait()
            step = min(left, WRITE_BLOCK)
            self._write(view[:step])
            left -= step

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._write(_response(b"200 OK", b"slept"))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, "127.0.0.1", port, backlog=1024)
    await serve_until_signalled(server)


async def serve_until_signalled(server: asyncio.Server) -> None:
    """Say the port (``harness.UPSTREAM_RE`` reads it), then serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"Upstream listening on 127.0.0.1:{bound}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
