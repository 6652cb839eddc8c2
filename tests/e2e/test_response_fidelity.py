"""What the public client receives is what the local server sent.

Header names compare case-insensitively; only hop-by-hop framing
(Transfer-Encoding, Connection, Keep-Alive) may differ.
"""

from __future__ import annotations

import gzip
import os

import pytest

from harness import HarnessError

from . import rawclient
from .conftest import Tunnel
from .http1 import Headers
from .localserver import Reply

pytestmark = pytest.mark.timeout(60)

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding"})
COOKIES = (
    "session=abc123; Path=/; HttpOnly; SameSite=Lax",
    'prefs="a,b;c"; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Secure',
    "empty=; Max-Age=0; Domain=example.test",
)


def end_to_end(headers: Headers) -> Headers:
    """Lower-cased names, grouped by name; lines of one name keep their order."""
    kept = [(name.lower(), value) for name, value in headers if name.lower() not in HOP_BY_HOP]
    return sorted(kept, key=lambda header: header[0])


def fetch(tunnel: Tunnel, path: str, reply: Reply, method: str = "GET") -> rawclient.Response:
    tunnel.local.route(path, reply)
    return rawclient.request(tunnel.port, method, path, tunnel.host)


@pytest.mark.parametrize("status", [200, 201, 203, 299, 400, 404, 410, 418, 451, 500, 503, 599])
def test_status_arrives(tunnel: Tunnel, uid: str, status: int) -> None:
    """Any status the local server sends, common or not, reaches the public client."""
    body = f"status {status}".encode()
    response = fetch(tunnel, f"/{uid}/status", Reply(status=status, reason="Whatever", body=body))
    assert (response.status, response.body) == (status, body)


def test_response_header_lines_arrive_unchanged(tunnel: Tunnel, uid: str) -> None:
    """Every header line, repeated Set-Cookie lines included, arrives with its value unchanged."""
    headers = (
        ("Content-Type", "text/html; charset=utf-8"),
        *(("Set-Cookie", cookie) for cookie in COOKIES),
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Link", '</a.css>; rel="preload"; as="style", </b.js>; rel="preload"'),
        ("X-Multi", "one"),
        ("X-Multi", "two, three"),
        ("ETag", 'W/"5e-1a"'),
        ("Date", "Tue, 01 Jan 2030 00:00:00 GMT"),
        ("Server", "local-dev-server/1.0"),
        ("X-Symbols", "!#$%&'*+-.^`|~ <>@[]{}?=/\\:;"),
    )
    body = b"<p>hello</p>"
    response = fetch(tunnel, f"/{uid}/headers", Reply(headers=headers, body=body))
    assert response.values("Set-Cookie") == list(COOKIES)
    sent = [*headers, ("Content-Length", str(len(body)))]
    assert end_to_end(response.headers) == end_to_end(sent)
    assert response.body == body


@pytest.mark.parametrize(
    "reply",
    [
        Reply(headers=(("Content-Length", "5"),), body=b"hello", content_length=False),
        Reply(body=os.urandom(200_000), chunked=True),
        Reply(status=404, body=b""),
        Reply(status=302, headers=(("Location", "/next"),), body=b""),
    ],
    ids=["content-length-only", "chunked-only", "404-empty", "redirect"],
)
def test_no_response_headers_added(tunnel: Tunnel, uid: str, reply: Reply) -> None:
    """No header the local server did not send: no Server, Date, Content-Type, X-Frame-Options."""
    response = fetch(tunnel, f"/{uid}/bare", reply)
    expected = list(reply.headers)
    if not reply.chunked and reply.content_length:
        expected.append(("Content-Length", str(len(reply.body))))
    assert end_to_end(response.headers) == end_to_end(expected)
    assert response.body == reply.body


def test_local_error_answers_are_not_logged_as_server_errors(tunnel: Tunnel, uid: str) -> None:
    """A 404 or 500 from the local server is its answer, relayed as is: not our failure.

    Django logs every 4xx/5xx a view returns ("Not Found: /path", through a thread
    hop); the tunnel server's log would fill with the local app's answers.
    """
    for status in (404, 500):
        response = fetch(tunnel, f"/{uid}/answer-{status}", Reply(status=status, body=b"x"))
        assert (response.status, response.body) == (status, b"x")
    # Absence can only be shown with a deadline: a log line would be written before
    # the response was sent, so one second is ample.
    with pytest.raises(HarnessError):
        tunnel.server.stdout.wait_for(rf"/{uid}/answer-", timeout=1.0)


def test_gzip_body_is_not_decompressed(tunnel: Tunnel, uid: str) -> None:
    """A gzip Content-Encoding body reaches the public client as the same compressed bytes."""
    compressed = gzip.compress(b"hello, tunnel! " * 5000 + os.urandom(1000))
    reply = Reply(
        headers=(
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Encoding", "gzip"),
            ("Vary", "Accept-Encoding"),
        ),
        body=compressed,
    )
    tunnel.local.route(f"/{uid}/gz", reply)
    response = rawclient.request(
        tunnel.port, "GET", f"/{uid}/gz", tunnel.host, [("Accept-Encoding", "gzip")]
    )
    assert response.value("Content-Encoding") == "gzip"
    assert response.body == compressed
    assert response.value("Content-Length") in (None, str(len(compressed)))


@pytest.mark.parametrize("location", ["/{uid}/target?x=1", "http://example.com/{uid}/landing"])
def test_redirect_is_not_followed(tunnel: Tunnel, uid: str, location: str) -> None:
    """A 302 reaches the public client with its Location; nobody fetches the target."""
    location = location.format(uid=uid)
    response = fetch(tunnel, f"/{uid}/go", Reply(status=302, headers=(("Location", location),)))
    assert response.status == 302
    assert response.values("Location") == [location]
    assert tunnel.local.requests(lambda r: "target" in r.target and uid in r.target) == []


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=os.urandom(4 * 1024 * 1024) + bytes(range(256))),
        Reply(body=os.urandom(2 * 1024 * 1024 + 17), chunked=True, chunk_size=100_000),
        Reply(body=os.urandom(1024 * 1024), content_length=False, close=True),
        Reply(body=b""),
    ],
    ids=["4MB-content-length", "2MB-chunked", "1MB-until-close", "empty"],
)
def test_response_body_arrives_exactly(tunnel: Tunnel, uid: str, reply: Reply) -> None:
    """Body bytes arrive unchanged, however the local server delimits them."""
    response = fetch(tunnel, f"/{uid}/body", reply)
    assert response.status == 200
    assert len(response.body) == len(reply.body)
    assert response.body == reply.body
    if reply.content_length and not reply.chunked:
        assert response.values("Content-Length") == [str(len(reply.body))]


def test_head_has_headers_and_no_body(tunnel: Tunnel, uid: str) -> None:
    """HEAD returns the local server's Content-Length and no body; the connection stays usable."""
    body = os.urandom(12_345)
    tunnel.local.route(f"/{uid}/doc", Reply(headers=(("Content-Type", "image/png"),), body=body))
    host = [("Host", tunnel.host)]
    with rawclient.RawConnection(tunnel.port) as conn:
        head = conn.request("HEAD", f"/{uid}/doc", host)
        get = conn.request("GET", f"/{uid}/doc", host)
        again = conn.request("HEAD", f"/{uid}/doc", host)
        last = conn.request("GET", f"/{uid}/other", host)
    assert head.status == 200
    assert head.values("Content-Length") == ["12345"]
    assert head.values("Content-Type") == ["image/png"]
    assert (get.status, get.body) == (200, body)
    assert again.values("Content-Length") == ["12345"]
    assert (last.status, last.body) == (200, b"ok")
    assert tunnel.local.requests(lambda r: r.path == f"/{uid}/doc")[0].method == "HEAD"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_then_next_request(tunnel: Tunnel, uid: str, status: int) -> None:
    """204 and 304 carry no body, and the next request on the connection is answered correctly."""
    headers = (("ETag", '"v1"'), ("Cache-Control", "max-age=60"))
    tunnel.local.route(f"/{uid}/empty", Reply(status=status, headers=headers, body=b""))
    host = [("Host", tunnel.host)]
    with rawclient.RawConnection(tunnel.port) as conn:
        first = conn.request("GET", f"/{uid}/empty", [*host, ("If-None-Match", '"v1"')])
        second = conn.request("GET", f"/{uid}/next", host)
        third = conn.request("GET", f"/{uid}/empty", host)
    assert first.status == status
    assert end_to_end(first.headers) == end_to_end(list(headers))
    assert (second.status, second.body) == (200, b"ok")
    assert third.status == status


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\n" * 3,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.js>\r\n\r\n",
    ],
    ids=["103", "102-thrice", "100-then-103"],
)
def test_interim_responses_are_consumed_and_the_final_one_arrives(
    tunnel: Tunnel, uid: str, interim: bytes
) -> None:
    """Issue 8, defect 4: 1xx heads before the answer no longer reach the server as a
    final status (which closed the whole tunnel); the public client gets the answer."""
    path = f"/{uid}/interim"

    def answer(incoming) -> bool:
        incoming.wfile.write(interim + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
        incoming.wfile.flush()
        return True

    tunnel.local.stream(path, answer)
    response = rawclient.request(tunnel.port, "GET", path, tunnel.host)
    assert (response.status, response.body) == (200, b"final")
    assert response.values("Link") == []
