"""Just enough HTTP/1.1 framing to see bytes as they are on the wire (RFC 9112).

Shared by the raw test client and the recording local server. Nothing here
normalises a header name or value, merges repeated headers or decodes a body.
"""

from __future__ import annotations

from typing import BinaryIO

#: Longest start or header line we accept: a bound on every read loop.
MAX_LINE = 64 * 1024
#: Most header lines in one message.
MAX_HEADERS = 200
#: Largest body we read; bigger means the test or the product is broken.
MAX_BODY = 64 * 1024 * 1024

Headers = list[tuple[str, str]]


class FramingError(Exception):
    """The peer sent something that is not HTTP/1.1 framing we understand."""


class PeerClosed(FramingError):
    """The connection ended before a complete message."""


def read_line(rfile: BinaryIO) -> bytes:
    """Read one CRLF-terminated line and return it without the CRLF."""
    line = rfile.readline(MAX_LINE + 1)
    if not line:
        raise PeerClosed("connection closed")
    if len(line) > MAX_LINE:
        raise FramingError("line too long")
    if not line.endswith(b"\r\n"):
        raise FramingError(f"line not terminated by CRLF: {line[:80]!r}")
    return line[:-2]


def read_head(rfile: BinaryIO) -> tuple[str, Headers]:
    """Read a start line and the header lines, in order, names and values as sent.

    Values lose only the optional whitespace around them (RFC 9112 section 5).
    """
    start = read_line(rfile).decode("latin-1")
    headers: Headers = []
    for _ in range(MAX_HEADERS + 1):
        line = read_line(rfile)
        if not line:
            return start, headers
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            raise FramingError(f"malformed header line: {line[:80]!r}")
        headers.append((name, value.strip(" \t")))
    raise FramingError("too many header lines")


def read_exact(rfile: BinaryIO, size: int) -> bytes:
    if size > MAX_BODY:
        raise FramingError(f"body of {size} bytes is over the test limit")
    data = rfile.read(size)
    if len(data) != size:
        raise PeerClosed(f"body ended after {len(data)} of {size} bytes")
    return data


def read_chunked(rfile: BinaryIO) -> bytes:
    """Read a chunked body (RFC 9112 section 7.1) and its trailer section."""
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = read_line(rfile).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise FramingError(f"bad chunk size {size_line[:20]!r}") from None
        if size == 0:
            break
        total += size
        parts.append(read_exact(rfile, size))
        if total > MAX_BODY:
            raise FramingError("chunked body over the test limit")
        if read_line(rfile) != b"":
            raise FramingError("chunk not followed by CRLF")
    for _ in range(MAX_HEADERS + 1):
        if read_line(rfile) == b"":
            return b"".join(parts)
    raise FramingError("too many trailer lines")


def read_to_close(rfile: BinaryIO) -> bytes:
    data = rfile.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise FramingError("close-delimited body over the test limit")
    return data


def values(headers: Headers, name: str) -> list[str]:
    """All values of one header, in order; names compare case-insensitively."""
    return [v for n, v in headers if n.lower() == name.lower()]


def value(headers: Headers, name: str) -> str | None:
    found = values(headers, name)
    return found[0] if found else None


def is_chunked(headers: Headers) -> bool:
    codings = ",".join(values(headers, "Transfer-Encoding")).lower()
    return codings.rsplit(",", 1)[-1].strip() == "chunked"


def encode_chunked(chunks: list[bytes]) -> bytes:
    out = bytearray()
    for chunk in chunks:
        if chunk:
            out += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


def encode_head(start_line: str, headers: Headers) -> bytes:
    lines = [start_line, *(f"{name}: {val}" for name, val in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
