"""The soak's local server: every answer is one the caller can check byte for byte.

Run as ``python -m bench.soak.local --port 0``; it prints ``Upstream listening on
127.0.0.1:PORT`` (``harness.UPSTREAM_RE``) once it listens. HTTP/1.1 with
keep-alive, on asyncio streams:

- ``GET /small/<text>`` answers ``small <text>``;
- ``GET /bytes/<size>/<seed>`` sends :func:`pattern` ``(size, seed)``, as fast as
  the reader takes it;
- ``POST /upload`` reads the body (Content-Length or chunked) and answers
  ``<bytes> <sha256 hex>``;
- ``GET /sse/<count>/<ms>/<text>`` streams :func:`sse_events`, one event every
  ``ms`` milliseconds, chunked (``text/event-stream``);
- a WebSocket handshake on any path: each frame is echoed as it came (the
  ``websockets`` sans-I/O protocol, fed the bytes read here), and a close is
  answered with its code.

Anything else is a 404, a malformed request a 400 and a WARNING on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import logging
import sys

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from bench.upstream import serve_until_signalled
from client.protocol import MAX_WS_MESSAGE

logger = logging.getLogger("soak.local")

#: Bytes of the repeating block a download is made of, and per write.
BLOCK = 64 * 1024
#: Largest request head; the soak's are far smaller.
MAX_HEAD = 64 * 1024
#: Bytes taken from a WebSocket's socket at a time.
READ_SIZE = 64 * 1024


class BadRequest(Exception):
    """The request cannot be parsed; answered with 400 and the connection closed."""


@functools.lru_cache(maxsize=64)
def _block(seed: int) -> bytes:
    return hashlib.sha256(f"soak {seed}".encode()).digest() * (BLOCK // 32)


def pattern(size: int, seed: int, offset: int = 0) -> bytes:
    """Bytes ``offset`` to ``offset + size`` of the download body for ``seed`` (size <= BLOCK)."""
    block = _block(seed)
    start = offset % BLOCK
    return (block[start:] + block[:start])[:size]


@functools.lru_cache(maxsize=256)
def pattern_digest(size: int, seed: int) -> str:
    """The sha256 (hex) of the whole download body of ``size`` bytes for ``seed``."""
    digest = hashlib.sha256()
    block = _block(seed)
    whole, rest = divmod(size, BLOCK)
    for _ in range(whole):
        digest.update(block)
    digest.update(block[:rest])
    return digest.hexdigest()


def sse_events(count: int, text: str) -> list[bytes]:
    """The events ``/sse/<count>/<ms>/<text>`` sends, in order."""
    return [f"id: {i}\ndata: {text} {i}\n\n".encode() for i in range(count)]


class Head:
    """A parsed request head."""

    def __init__(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(f"bad request line {lines[0][:100]!r}")
        self.raw = raw
        self.method, self.target, self.version = parts
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise BadRequest(f"bad header line {line[:100]!r}")
            key = name.strip().lower()
            value = value.strip()
            self.headers[key] = f"{self.headers[key]}, {value}" if key in self.headers else value

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        return self.version == "HTTP/1.1" and "close" not in tokens

    @property
    def upgrade(self) -> bool:
        return self.headers.get("upgrade", "").lower() == "websocket"


async def read_body(reader: asyncio.StreamReader, head: Head):
    """Yield the request body's data, undoing chunked coding (RFC 9112 section 7.1)."""
    if "chunked" in head.headers.get("transfer-encoding", "").lower():
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields
                    pass
                return
            yield await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise BadRequest("chunk data not followed by CRLF")
    try:
        left = int(head.headers.get("content-length", "0"))
    except ValueError:
        raise BadRequest("bad Content-Length") from None
    while left > 0:
        data = await reader.read(min(left, BLOCK))
        if not data:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(data)
        yield data


def _head(status: str, fields: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _simple(status: str, body: bytes, keep_alive: bool = True) -> bytes:
    fields = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    if not keep_alive:
        fields.append(("Connection", "close"))
    return _head(status, fields) + body


async def answer(head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the body and send the response for one request."""
    parts = head.target.split("?", 1)[0].split("/")[1:]
    if head.method == "POST" and parts == ["upload"]:
        digest = hashlib.sha256()
        received = 0
        async for data in read_body(reader, head):
            digest.update(data)
            received += len(data)
        writer.write(_simple("200 OK", f"{received} {digest.hexdigest()}".encode()))
        return
    async for _ in read_body(reader, head):  # a body nobody asked for: read and dropped
        pass
    if head.method == "GET" and len(parts) == 2 and parts[0] == "small":
        writer.write(_simple("200 OK", f"small {parts[1]}".encode()))
    elif head.method == "GET" and len(parts) == 3 and parts[0] == "bytes":
        size, seed = int(parts[1]), int(parts[2])
        fields = [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        writer.write(_head("200 OK", fields))
        sent = 0
        while sent < size:
            step = min(BLOCK, size - sent)
            writer.write(pattern(step, seed, sent))
            sent += step
            await writer.drain()
    elif head.method == "GET" and len(parts) == 4 and parts[0] == "sse":
        count, pause = int(parts[1]), int(parts[2]) / 1000
        fields = [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
        ]
        writer.write(_head("200 OK", fields))
        for event in sse_events(count, parts[3]):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(pause)
        writer.write(b"0\r\n\r\n")
    else:
        writer.write(_simple("404 Not Found", b"not found\n"))


async def echo_websocket(
    head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Complete the handshake, then echo every data frame until the closing handshake."""
    protocol = ServerProtocol(max_size=MAX_WS_MESSAGE)
    protocol.receive_data(head.raw)
    request = next((e for e in protocol.events_received() if isinstance(e, Request)), None)
    if request is None:
        raise BadRequest("WebSocket handshake not understood")
    response = protocol.accept(request)
    protocol.send_response(response)
    if not await _flush(protocol, writer) or response.status_code != 101:
        return
    echo = {
        Opcode.TEXT: protocol.send_text,
        Opcode.BINARY: protocol.send_binary,
        Opcode.CONT: protocol.send_continuation,
    }
    while True:
        data = await reader.read(READ_SIZE)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        for event in protocol.events_received():
            if isinstance(event, Frame) and event.opcode in echo:
                echo[event.opcode](event.data, fin=event.fin)
        if not await _flush(protocol, writer) or not data:
            return


async def _flush(protocol: ServerProtocol, writer: asyncio.StreamWriter) -> bool:
    """Write what the protocol has to send; False once it says the connection is done."""
    for data in protocol.data_to_send():
        if not data:  # the protocol's end of stream: the closing handshake is done
            return False
        writer.write(data)
    await writer.drain()
    return True


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the caller closed between requests
            head = Head(raw)
            if head.upgrade:
                await echo_websocket(head, reader, writer)
                return
            await answer(head, reader, writer)
            await writer.drain()
            if not head.keep_alive:
                return
    except (BadRequest, ValueError, asyncio.LimitOverrunError) as exc:
        logger.warning("bad request: %s", exc)
        writer.write(_simple("400 Bad Request", f"{exc}\n".encode(), keep_alive=False))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the caller went away mid-request (a cancel, a churned tunnel)
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(
        serve_connection, "127.0.0.1", port, limit=MAX_HEAD, backlog=1024
    )
    await serve_until_signalled(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak.local", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
