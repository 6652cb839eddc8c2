"""A raw-socket HTTP/1.1 client: exact bytes out, exact status, header lines and body in."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

from . import http1
from .http1 import Headers

#: Statuses whose responses never have a body (RFC 9110 section 6.4.1).
NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Response:
    version: str
    status: int
    reason: str
    headers: Headers
    body: bytes
    #: How the body was delimited: "length", "chunked", "close" or "none".
    framing: str

    def value(self, name: str) -> str | None:
        return http1.value(self.headers, name)

    def values(self, name: str) -> list[str]:
        return http1.values(self.headers, name)


class RawConnection:
    """One keep-alive TCP connection to the server; requests are sent as given."""

    def __init__(self, port: int, *, timeout: float = 15.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes = b"",
        *,
        chunks: list[bytes] | None = None,
    ) -> Response:
        """Send a request with exactly these header lines, then read the response.

        Content-Length is added for a non-empty ``body``; ``chunks`` are sent with
        Transfer-Encoding: chunked. Add either header yourself to send it for an
        empty body.
        """
        headers = list(headers)
        if chunks is not None:
            headers.append(("Transfer-Encoding", "chunked"))
            payload = http1.encode_chunked(chunks)
        else:
            if body and http1.value(headers, "Content-Length") is None:
                headers.append(("Content-Length", str(len(body))))
            payload = body
        self.send(http1.encode_head(f"{method} {target} HTTP/1.1", headers) + payload)
        return self.read_response(method)

    def read_response(self, method: str = "GET") -> Response:
        start, headers = http1.read_head(self.rfile)
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
            raise http1.FramingError(f"bad status line {start!r}")
        status = int(code)
        if method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
            return Response(version, status, reason, headers, b"", "none")
        if http1.is_chunked(headers):
            return Response(
                version, status, reason, headers, http1.read_chunked(self.rfile), "chunked"
            )
        length = http1.value(headers, "Content-Length")
        if length is not None:
            body = http1.read_exact(self.rfile, int(length))
            return Response(version, status, reason, headers, body, "length")
        return Response(version, status, reason, headers, http1.read_to_close(self.rfile), "close")


def request(
    port: int,
    method: str,
    target: str,
    host: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    chunks: list[bytes] | None = None,
    timeout: float = 15.0,
) -> Response:
    """Send one request on a fresh connection; ``Host`` comes first, then ``headers``."""
    with RawConnection(port, timeout=timeout) as conn:
        return conn.request(method, target, [("Host", host), *headers], body, chunks=chunks)
