"""The harness itself, with no tunnel in between: what the other tests compare against."""

from __future__ import annotations

import os

import pytest

from . import rawclient
from .localserver import LocalServer, Reply

pytestmark = pytest.mark.timeout(30)


def test_local_server_records_exact_request(local_server: LocalServer, uid: str) -> None:
    """The local server records target, header lines and a Content-Length body as sent."""
    body = os.urandom(5000) + bytes(range(256))
    target = f"/{uid}/a%2Fb/../c?x=1&y=%20&x=2"
    headers = [("X-Odd", 'a, "b";c'), ("x-multi", "1"), ("X-Multi", "2")]
    response = rawclient.request(local_server.port, "POST", target, "example.test", headers, body)
    assert response.status == 200
    seen = local_server.only(f"/{uid}/a%2Fb/../c")
    assert (seen.method, seen.target, seen.framing, seen.body) == ("POST", target, "length", body)
    assert seen.headers == [
        ("Host", "example.test"),
        *headers,
        ("Content-Length", str(len(body))),
    ]


def test_local_server_reads_chunked_body(local_server: LocalServer, uid: str) -> None:
    """A chunked request body is recorded as chunked, with its bytes joined."""
    chunks = [b"abc", os.urandom(70000), b"\r\n0\r\n"]
    path = f"/{uid}"
    rawclient.request(local_server.port, "PUT", path, "example.test", chunks=chunks)
    seen = local_server.only(path)
    assert (seen.framing, seen.body) == ("chunked", b"".join(chunks))


def test_raw_client_reads_replies_verbatim(local_server: LocalServer, uid: str) -> None:
    """Repeated header lines, chunked and close-delimited bodies, HEAD and 304 on one connection."""
    big = os.urandom(100_000)
    local_server.route(f"/{uid}/c", Reply(status=299, reason="Odd", body=big, chunked=True))
    local_server.route(
        f"/{uid}/h", Reply(headers=(("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")), body=b"xyz")
    )
    local_server.route(f"/{uid}/n", Reply(status=304, headers=(("ETag", '"v1"'),)))
    local_server.route(f"/{uid}/e", Reply(body=big, content_length=False, close=True))
    host = [("Host", "example.test")]
    with rawclient.RawConnection(local_server.port) as conn:
        chunked = conn.request("GET", f"/{uid}/c", host)
        head = conn.request("HEAD", f"/{uid}/h", host)
        not_modified = conn.request("GET", f"/{uid}/n", host)
        closing = conn.request("GET", f"/{uid}/e", host)
    assert (chunked.status, chunked.framing, chunked.body) == (299, "chunked", big)
    assert head.headers == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Length", "3")]
    assert (head.body, not_modified.status, not_modified.body) == (b"", 304, b"")
    assert (closing.framing, closing.body) == ("close", big)
    assert len({r.connection for r in local_server.requests(lambda r: uid in r.target)}) == 1
