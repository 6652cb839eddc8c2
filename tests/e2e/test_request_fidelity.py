"""What the local server receives is what the public client sent, plus X-Forwarded-*.

Header names are compared case-insensitively (daphne lower-cases them) and
names with "_" are not used (daphne drops them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import pytest

from . import rawclient
from .conftest import Tunnel
from .http1 import Headers
from .localserver import Recorded

pytestmark = pytest.mark.timeout(60)

#: Framing and connection management: a proxy may change these (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})
#: Body framing is asserted by the body tests.
FRAMING = HOP_BY_HOP | {"content-length"}


def end_to_end(headers: Headers, ignore: frozenset[str] = FRAMING | FORWARDED) -> Headers:
    """Lower-cased names, grouped by name; lines of one name keep their order."""
    kept = [(name.lower(), value) for name, value in headers if name.lower() not in ignore]
    return sorted(kept, key=lambda header: header[0])


def send(
    tunnel: Tunnel,
    uid: str,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    chunks: list[bytes] | None = None,
) -> Recorded:
    """Send a request marked with X-Test-Id through the tunnel; return what the local server got."""
    headers = [("X-Test-Id", uid), *headers]
    response = rawclient.request(
        tunnel.port, method, target, tunnel.host, headers, body, chunks=chunks
    )
    assert response.status == 200, f"{response.status} {response.body[:300]!r}"
    return tunnel.local.wait_for(lambda r: r.value("X-Test-Id") == uid)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_method_arrives(tunnel: Tunnel, uid: str, method: str) -> None:
    """The local server sees the method the public client used."""
    seen = send(tunnel, uid, method, f"/{uid}/method")
    assert (seen.method, seen.target) == (method, f"/{uid}/method")


@pytest.mark.parametrize(
    "target",
    [
        "/a%2Fb/../c?x=1&y=%20&x=2",
        "/",
        "/caf%C3%A9/%7Euser;v=1/?q=a+b&q=%2f&empty=&flag",
        "/x%2fy%2Fz/%2e%2e/./?%00=%ff&a=%3D%26",
        "//double//slashes//",
        "//evil.example/path?next=http://evil.example/",
        "/@evil.example/x",
    ],
)
def test_raw_target_arrives_unchanged(tunnel: Tunnel, uid: str, target: str) -> None:
    """Path and query reach the local server byte for byte: no decoding, no dot-segment removal."""
    seen = send(tunnel, uid, "GET", target)
    assert seen.target == target


def test_request_headers_arrive_unchanged(tunnel: Tunnel, uid: str) -> None:
    """Every header line reaches the local server with its value exactly as sent."""
    headers = [
        ("User-Agent", "e2e/1.0 (+https://example.test/bot; like Gecko)"),
        ("Accept", "text/html, application/json;q=0.9, */*;q=0.1"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Language", "fr-CH, fr;q=0.9, en;q=0.8"),
        ("Cookie", 'a=1; b="two words"; c=x,y; d=%20'),
        ("Authorization", "Bearer abc.DEF-ghi_jkl=="),
        ("If-None-Match", '"v1", W/"v2"'),
        ("X-Quoted", r'"a \"quoted\" string", (comment)'),
        ("X-Spacing", "a  b \t c"),
        ("X-Symbols", "!#$%&'*+-.^`|~ <>@[]{}?=/\\:;"),
        ("Cache-Control", "no-cache"),
    ]
    seen = send(tunnel, uid, "GET", f"/{uid}/headers", headers)
    sent = [("Host", tunnel.host), ("X-Test-Id", uid), *headers]
    assert end_to_end(seen.headers) == end_to_end(sent)


def test_no_request_headers_added(tunnel: Tunnel, uid: str) -> None:
    """A bare GET arrives with Host, our header and X-Forwarded-* only: no Accept-Encoding etc."""
    seen = send(tunnel, uid, "GET", f"/{uid}/bare")
    names = sorted(name.lower() for name, _ in seen.headers if name.lower() not in HOP_BY_HOP)
    assert names == sorted(["host", "x-test-id", *FORWARDED])


def test_repeated_request_headers_arrive_as_sent(tunnel: Tunnel, uid: str) -> None:
    """Several lines of one header arrive as several lines, in order."""
    headers = [("X-Multi", "one"), ("Accept", "text/html"), ("X-Multi", "two, three")]
    seen = send(tunnel, uid, "GET", f"/{uid}/repeated", headers)
    assert seen.values("X-Multi") == ["one", "two, three"]


def test_empty_request_header_value_arrives(tunnel: Tunnel, uid: str) -> None:
    """A header with an empty value is forwarded, empty."""
    seen = send(tunnel, uid, "GET", f"/{uid}/empty-header", [("X-Empty", "")])
    assert seen.values("X-Empty") == [""]


def test_non_ascii_request_header_bytes_arrive(tunnel: Tunnel, uid: str) -> None:
    """Header bytes outside ASCII (UTF-8 sent raw, RFC 9110 obs-text) arrive unchanged."""
    raw = "café ☕ naïve".encode().decode("latin-1")
    seen = send(tunnel, uid, "GET", f"/{uid}/utf8", [("X-Utf8", raw)])
    assert seen.values("X-Utf8") == [raw]


def test_forwarded_headers_without_incoming(tunnel: Tunnel, uid: str) -> None:
    """X-Forwarded-For is the public client's address; -Proto is http; -Host the Host sent."""
    seen = send(tunnel, uid, "GET", f"/{uid}/xff")
    assert seen.values("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.values("X-Forwarded-Proto") == ["http"]
    assert seen.values("X-Forwarded-Host") == [tunnel.host]


def test_forwarded_for_is_appended(tunnel: Tunnel, uid: str) -> None:
    """An incoming X-Forwarded-For keeps its value, with the public client's address appended."""
    seen = send(tunnel, uid, "GET", f"/{uid}/xff2", [("X-Forwarded-For", "203.0.113.7")])
    values = seen.values("X-Forwarded-For")
    assert len(values) == 1
    assert re.fullmatch(r"203\.0\.113\.7 ?, ?127\.0\.0\.1", values[0]), values


BINARY = os.urandom(300 * 1024) + bytes(range(256))


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00", BINARY, os.urandom(3 * 1024 * 1024)],
    ids=["empty", "one-byte", "300KB", "3MB"],
)
def test_content_length_body_arrives_exactly(tunnel: Tunnel, uid: str, body: bytes) -> None:
    """A Content-Length body arrives with the same Content-Length and the same bytes."""
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))]
    seen = send(tunnel, uid, "POST", f"/{uid}/body", headers, body)
    assert seen.framing == "length"
    assert seen.values("Content-Length") == [str(len(body))]
    assert len(seen.body) == len(body)
    assert seen.body == body


def test_chunked_body_arrives_chunked(tunnel: Tunnel, uid: str) -> None:
    """A chunked request body arrives chunked, with the same bytes."""
    chunks = [b"first", BINARY, b"\r\n0\r\n\r\n", bytes(range(256)), os.urandom(70_001)]
    seen = send(tunnel, uid, "PUT", f"/{uid}/chunked", chunks=chunks)
    assert seen.framing == "chunked"
    assert seen.value("Content-Length") is None
    assert seen.body == b"".join(chunks)


def test_bodyless_get_arrives_without_body_framing(tunnel: Tunnel, uid: str) -> None:
    """A GET without a body arrives with neither Content-Length nor Transfer-Encoding."""
    seen = send(tunnel, uid, "GET", f"/{uid}/nobody")
    assert (seen.framing, seen.body) == ("none", b"")
    assert seen.value("Content-Length") is None


def test_keep_alive_connection_carries_many_requests(tunnel: Tunnel, uid: str) -> None:
    """One public connection carries several requests, each forwarded and answered."""
    with rawclient.RawConnection(tunnel.port) as conn:
        for i in range(5):
            body = os.urandom(i * 1000)
            response = conn.request(
                "POST",
                f"/{uid}/ka/{i}",
                [("Host", tunnel.host), ("Content-Length", str(len(body)))],
                body,
            )
            assert (response.status, response.body) == (200, b"ok")
            seen = tunnel.local.only(f"/{uid}/ka/{i}")
            assert seen.body == body


def test_forged_client_identity_headers_are_dropped(tunnel: Tunnel, uid: str) -> None:
    """Issue 8, defect 7: what a public client claims about itself never reaches the local
    server as if we had said it; X-Forwarded-For keeps its chain with our entry last."""
    forged = [
        ("Forwarded", "for=10.0.0.1;proto=https"),
        ("X-Real-IP", "10.0.0.1"),
        ("X-Forwarded-Port", "443"),
        ("True-Client-IP", "10.0.0.1"),
        ("CF-Connecting-IP", "10.0.0.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-For", "10.0.0.1"),
    ]
    seen = send(tunnel, uid, "GET", f"/{uid}/forged", forged)
    for name in ("Forwarded", "X-Real-IP", "X-Forwarded-Port", "True-Client-IP"):
        assert seen.values(name) == [], name
    assert seen.values("CF-Connecting-IP") == []
    assert seen.values("X-Forwarded-Proto") == ["http"]
    assert seen.values("X-Forwarded-Host") == [tunnel.host]
    assert seen.values("X-Forwarded-For") == ["10.0.0.1, 127.0.0.1"]


def test_connection_header_cannot_strip_host(tunnel: Tunnel, uid: str) -> None:
    """``Connection: close, Host`` drops nothing the local server routes by."""
    seen = send(tunnel, uid, "GET", f"/{uid}/conn-host", [("Connection", "close, Host")])
    assert seen.values("Host") == [tunnel.host]


def test_options_asterisk_reaches_the_local_server(tunnel: Tunnel, uid: str) -> None:
    """Issue 8, defect 7: ``OPTIONS *`` (RFC 9110 section 9.3.7) is forwarded as it came,
    not answered with Django's 404."""
    seen = send(tunnel, uid, "OPTIONS", "*")
    assert (seen.method, seen.target) == ("OPTIONS", "*")
