"""The audit's attacks (issue 8), each asserting the documented answer and that another
tunnel on the same server is unaffected.

A malicious tunnel client is a raw WebSocket with a valid token; a hostile public
caller is a raw socket. Redis outages have their own file, ``test_redis_outage.py``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from client import protocol
from tunnels.relay.stream import LIVENESS_INTERVAL

from . import http1, rawclient
from .conftest import Database, Launcher, Token, Tunnel
from .localserver import Reply
from .rawtunnel import RawTunnel
from .wslocal import connect as ws_connect

pytestmark = pytest.mark.timeout(90)

#: Heartbeat of the servers these tests start, so a zombie heartbeat shows in seconds.
HEARTBEAT = 1.0
#: An answer slower than this is waiting on a dead channel, not refusing at once.
FAST = 3.0


def public_get(port: int, host: str) -> tuple[rawclient.Response, float]:
    started = time.monotonic()
    response = rawclient.request(port, "GET", "/", host, timeout=30)
    return response, time.monotonic() - started


def assert_not_found_for(port: int, host: str, seconds: float) -> None:
    """Soon, and then for ``seconds``, every request to ``host`` is a fast 502
    tunnel-not-found.

    A request that raced the close may still reach the closing tunnel: it is
    answered 502 tunnel-closed, at the latest by the liveness check
    (relay.stream.LIVENESS_INTERVAL) if it landed in the channel of a consumer
    that had stopped reading. The subdomain must be released within FAST.
    """
    released_by = time.monotonic() + FAST
    while True:
        response, took = public_get(port, host)
        assert response.status == 502 and took < LIVENESS_INTERVAL + FAST, (response, took)
        if response.value("Luminet-Error") == "tunnel-not-found":
            break
        assert time.monotonic() < released_by + LIVENESS_INTERVAL, "not released"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response, took = public_get(port, host)
        assert (response.status, response.value("Luminet-Error")) == (502, "tunnel-not-found")
        assert took < FAST, f"took {took:.1f} s: routed to a dead tunnel"


def assert_serves(tunnel: Tunnel) -> None:
    response, _ = public_get(tunnel.port, tunnel.host)
    assert response.status == 200, response


# -- a crashed tunnel consumer leaves no heartbeat behind (defect 1) --------------


def test_deeply_nested_json_before_auth_is_a_protocol_error(
    tunnel: Tunnel, raw_tunnels: list[RawTunnel]
) -> None:
    """``"[" * 100000`` as the first message closes with 4400, not a consumer crash."""
    raw = RawTunnel(tunnel.server.ws_url, None)
    raw_tunnels.append(raw)
    raw.ws.send("[" * 100_000)
    assert raw.close_code() == protocol.CloseCode.PROTOCOL_ERROR
    assert_serves(tunnel)


def test_deeply_nested_json_from_a_live_tunnel_frees_its_subdomain(
    launcher: Launcher, dev_token: Token, raw_tunnels: list[RawTunnel], local_server
) -> None:
    """The tunnel is closed with 4400, its subdomain answers a fast 502 from then on, and
    no heartbeat claims it back."""
    server = launcher.server(LUMINET_HEARTBEAT_INTERVAL=str(HEARTBEAT))
    raw = RawTunnel(server.ws_url, dev_token)
    raw_tunnels.append(raw)
    raw.ws.send("{" * 100_000)
    assert raw.close_code() == protocol.CloseCode.PROTOCOL_ERROR
    assert_not_found_for(server.port, f"{raw.subdomain}.localhost", 4 * HEARTBEAT)


# Redis dying under a live tunnel, and coming back empty: tests/e2e/test_redis_outage.py.


# -- response framing from the tunnel is checked (defect 3) -------------------------

FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"


class PublicConnection:
    """A raw public connection whose bytes are all kept, to show what reached the caller."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_all(self) -> tuple[bytes, bool]:
        """Everything until the server ends the connection; True if it was a reset."""
        received = bytearray()
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return bytes(received), True
            if not data:
                return bytes(received), False
            received += data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> PublicConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@pytest.fixture
def public_connections() -> Iterator[list[PublicConnection]]:
    opened: list[PublicConnection] = []
    try:
        yield opened
    finally:
        for conn in opened:
            conn.close()


def get(host: str, path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def answer(raw: RawTunnel, headers: list[tuple[str, str]], body: bytes) -> protocol.Request:
    """Wait for the next request on ``raw`` and answer it with this head and body."""
    request = protocol.decode(raw.ws.recv())
    assert isinstance(request, protocol.Request), request
    raw.ws.send(
        protocol.encode(
            protocol.Response(stream=request.stream, status=200, headers=headers, body=True)
        )
    )
    raw.ws.send_binary(protocol.encode_data(protocol.Data(request.stream, body, end=True)))
    return request


@pytest.fixture
def hostile(tunnel: Tunnel, dev_token: Token, raw_tunnels: list[RawTunnel]) -> Iterator[RawTunnel]:
    """A tunnel client on the shared server that answers whatever the test says."""
    raw = RawTunnel(tunnel.server.ws_url, dev_token)
    raw_tunnels.append(raw)
    yield raw
    assert_serves(tunnel)  # the other tunnel on the server is unaffected


def test_body_longer_than_content_length_never_reaches_the_caller(
    tunnel: Tunnel, hostile: RawTunnel, public_connections: list[PublicConnection]
) -> None:
    """Content-Length 5 and 60 bytes: no byte past the fifth is written, the connection is
    reset, and a pipelined request never reads the forged response."""
    public = PublicConnection(tunnel.port)
    public_connections.append(public)
    host = f"{hostile.subdomain}.localhost"
    public.send(get(host) + get(host, "/second"))
    answer(hostile, [("Content-Length", "5")], b"hello" + FORGED)
    received, reset = public.read_all()
    assert reset, received
    assert b"forged" not in received
    assert received.count(b"HTTP/1.1") <= 1


def test_body_shorter_than_content_length_resets_the_connection(
    tunnel: Tunnel, hostile: RawTunnel, public_connections: list[PublicConnection]
) -> None:
    """Content-Length 100 and 5 bytes: reset, never presented as complete."""
    public = PublicConnection(tunnel.port)
    public_connections.append(public)
    public.send(get(f"{hostile.subdomain}.localhost"))
    answer(hostile, [("Content-Length", "100")], b"hello")
    received, reset = public.read_all()
    assert reset, received
    assert len(received.partition(b"\r\n\r\n")[2]) < 100


@pytest.mark.parametrize(
    "lengths",
    [["5", "6"], ["5, 6"], ["-5"], ["5 5"], ["0x5"], ["99999999999999999999"]],
    ids=["two-lines", "list", "negative", "space", "hex", "too-long"],
)
def test_conflicting_or_invalid_content_length_is_a_502(
    tunnel: Tunnel, hostile: RawTunnel, lengths: list[str]
) -> None:
    """A length that cannot be trusted is refused with 502 invalid-response."""
    with rawclient.RawConnection(tunnel.port) as public:
        public.send(get(f"{hostile.subdomain}.localhost"))
        answer(hostile, [("Content-Length", value) for value in lengths], b"hello")
        response = public.read_response()
    assert (response.status, response.value("Luminet-Error")) == (502, "invalid-response")


def test_repeated_identical_content_length_is_sent_once(tunnel: Tunnel, hostile: RawTunnel) -> None:
    """``Content-Length: 5`` twice (or ``5, 5``) is one length: one header line, 5 bytes."""
    with rawclient.RawConnection(tunnel.port) as public:
        public.send(get(f"{hostile.subdomain}.localhost"))
        answer(hostile, [("Content-Length", "5"), ("Content-Length", "5, 5")], b"hello")
        response = public.read_response()
    assert response.status == 200
    assert response.values("Content-Length") == ["5"]
    assert response.body == b"hello"


def test_transfer_encoding_overrides_content_length(tunnel: Tunnel, hostile: RawTunnel) -> None:
    """With both, the length goes (RFC 9112 section 6.3) and the body is framed by us."""
    with rawclient.RawConnection(tunnel.port) as public:
        public.send(get(f"{hostile.subdomain}.localhost"))
        answer(
            hostile,
            [("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
            b"hello" + FORGED,
        )
        response = public.read_response()
    assert response.values("Content-Length") == []
    assert response.framing == "chunked"
    assert response.body == b"hello" + FORGED


def test_local_server_with_conflicting_lengths_gets_a_clear_502(tunnel: Tunnel, uid: str) -> None:
    """The real client refuses such a response from the local server by name."""
    path = f"/conflict-{uid}"
    tunnel.local.route(
        path,
        Reply(
            headers=(("Content-Length", "5"), ("Content-Length", "6")),
            body=b"hello",
            content_length=False,
        ),
    )
    response = rawclient.request(tunnel.port, "GET", path, tunnel.host)
    assert (response.status, response.value("Luminet-Error")) == (502, "local-error")
    assert b"conflicting Content-Length" in response.body


# -- request bodies are never spooled, and refused before they are read (defect 2) --

HUGE = 100 * 2**30  # a declared body no test ever sends
#: Seconds the server keeps draining a connection it answered early (tunnelsite.server).
LINGER = 5.0


def spooled_files(pid: int) -> list[str]:
    """The server's open files that are temporary files (deleted, or in the temp dir),
    but for the test's SQLite database (and its journal), which lives in the temp dir."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue  # closed meanwhile
        if re.search(r"/db\.sqlite3(-wal|-shm|-journal)?$", target):
            continue
        if target.endswith("(deleted)") or target.startswith(tempfile.gettempdir()):
            found.append(target)
    return found


def head(host: str, *lines: str, method: str = "POST") -> bytes:
    return "\r\n".join([f"{method} /upload HTTP/1.1", f"Host: {host}", *lines, "", ""]).encode()


def read_head_now(conn: PublicConnection) -> tuple[int, dict[str, str]]:
    """Read a response head that must come at once, while the body is still unsent."""
    conn.sock.settimeout(FAST)
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.sock.recv(4096)
        assert more, f"closed before a response head: {data!r}"
        data += more
    lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {name.lower(): value for name, value in fields.items()}


def assert_closed_within(conn: PublicConnection, seconds: float) -> None:
    """Keep sending body bytes; the server must end the connection within ``seconds``."""
    conn.sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn.sock.sendall(b"x" * 1024)
            if conn.sock.recv(65536) == b"":
                return
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return
    raise AssertionError(f"the connection was still open after {seconds} s")


@pytest.mark.parametrize(
    ("host", "status"),
    [("nosuch.localhost", 502), ("evil.example.com", 400)],
    ids=["missing-tunnel", "unknown-host"],
)
def test_body_to_a_host_we_do_not_serve_is_refused_before_it_is_read(
    tunnel: Tunnel, public_connections: list[PublicConnection], host: str, status: int
) -> None:
    """A 100 GB body is answered from its head alone: no temporary file, the connection
    is closed after a short drain, the other tunnel unaffected."""
    public = PublicConnection(tunnel.port)
    public_connections.append(public)
    public.send(head(host, f"Content-Length: {HUGE}") + b"x" * 256 * 1024)
    got, fields = read_head_now(public)
    assert got == status
    assert fields.get("connection") == "close"
    assert spooled_files(tunnel.server.pid) == []
    assert_closed_within(public, LINGER + FAST)
    assert_serves(tunnel)


def test_slow_uploads_to_a_missing_tunnel_hold_no_disk_and_end(
    tunnel: Tunnel, public_connections: list[PublicConnection]
) -> None:
    """Four connections trickling 100 GB bodies are each answered and closed within the
    drain period, holding no file."""
    conns = [PublicConnection(tunnel.port) for _ in range(4)]
    public_connections.extend(conns)
    for conn in conns:
        conn.send(head("nosuch.localhost", f"Content-Length: {HUGE}") + b"x")
    for conn in conns:
        assert read_head_now(conn)[0] == 502
    assert spooled_files(tunnel.server.pid) == []
    for conn in conns:
        assert_closed_within(conn, LINGER + FAST)


def test_main_host_refuses_a_body_over_the_limit_before_reading_it(
    tunnel: Tunnel, public_connections: list[PublicConnection]
) -> None:
    """The admin's host takes at most LUMINET_MAX_BODY_BYTES (1 MiB by default): a larger
    declared body gets 413 at once."""
    public = PublicConnection(tunnel.port)
    public_connections.append(public)
    public.send(head("localhost", f"Content-Length: {2 * 2**20}"))
    assert read_head_now(public)[0] == 413


def test_main_host_refuses_a_chunked_body_once_it_passes_the_limit(tunnel: Tunnel) -> None:
    """Without a length, the body is counted as it comes: 413 past the limit."""
    chunks = [b"x" * 256 * 1024] * 5
    response = rawclient.request(tunnel.port, "POST", "/health", "localhost", chunks=chunks)
    assert response.status == 413
    small = rawclient.request(tunnel.port, "POST", "/health", "localhost", body=b"ok")
    assert small.status != 413


def test_tunnel_upload_streams_to_the_local_server_as_it_is_sent(
    tunnel: Tunnel, uid: str, public_connections: list[PublicConnection]
) -> None:
    """The local server reads the first MiB while the caller still holds the rest back:
    the body is never collected (on disk or anywhere) before it is forwarded."""
    path = f"/stream-up-{uid}"
    first_mib = threading.Event()
    received: list[bytes] = []

    def sink(incoming) -> bool:
        length = int(dict((n.lower(), v) for n, v in incoming.headers)["content-length"])
        got = bytearray()
        while len(got) < length:
            got += incoming.rfile.read(min(65536, length - len(got)))
            if len(got) >= 2**20:
                first_mib.set()
        received.append(bytes(got))
        incoming.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        incoming.wfile.flush()
        return True

    tunnel.local.stream(path, sink)
    body = os.urandom(3 * 2**20)
    public = PublicConnection(tunnel.port)
    public_connections.append(public)
    request_head = f"POST {path} HTTP/1.1\r\nHost: {tunnel.host}\r\n"
    public.send(f"{request_head}Content-Length: {len(body)}\r\n\r\n".encode() + body[: 2**20])
    assert first_mib.wait(10), "the local server saw nothing of a body still being sent"
    assert spooled_files(tunnel.server.pid) == []
    public.send(body[2**20 :])
    with public.sock.makefile("rb") as rfile:
        start, _ = http1.read_head(rfile)
    assert start.startswith("HTTP/1.1 200")
    assert received == [body]


# -- WebSocket refusals carry their headers (issue 9: WsReject.headers was dropped) --


def test_websocket_refusal_headers_reach_the_public_client(
    tunnel: Tunnel, hostile: RawTunnel, public_connections: list[PublicConnection]
) -> None:
    """A refusal's status and headers arrive; its framing headers are the server's own."""
    public = PublicConnection(tunnel.port)
    public_connections.append(public)
    public.send(
        f"GET /ws HTTP/1.1\r\nHost: {hostile.subdomain}.localhost\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
    )
    opening = protocol.decode(hostile.ws.recv())
    assert isinstance(opening, protocol.WsOpen)
    refusal = [
        ("WWW-Authenticate", 'Basic realm="préview"'.encode().decode("latin-1")),
        ("Content-Length", "999"),
        ("Connection", "keep-alive"),
    ]
    hostile.ws.send(
        protocol.encode(protocol.WsReject(stream=opening.stream, status=401, headers=refusal))
    )
    received, _ = public.read_all()
    head = received.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert head[0].startswith("HTTP/1.1 401 ")
    assert 'WWW-Authenticate: Basic realm="pr\xc3\xa9view"' in head
    assert [line for line in head if line.lower().startswith("content-length")] == [
        "Content-Length: 0"
    ]
    assert not [line for line in head if line.lower().startswith("connection")]


def accept_socket(raw: RawTunnel) -> int:
    """Accept the next WebSocket the edge opens on ``raw``; return its stream."""
    opening = protocol.decode(raw.ws.recv())
    assert isinstance(opening, protocol.WsOpen), opening
    raw.ws.send(protocol.encode(protocol.WsAccept(stream=opening.stream)))
    return opening.stream


def test_invalid_utf8_in_a_text_message_closes_that_socket_with_1007(
    tunnel: Tunnel, hostile: RawTunnel
) -> None:
    """Issue 8, defect 7: the public socket is closed with 1007; the tunnel is told, and
    the server goes on."""
    with ThreadPoolExecutor(1) as pool:
        opening = pool.submit(ws_connect, tunnel.port, f"{hostile.subdomain}.localhost", "/ws")
        stream = accept_socket(hostile)
        public = opening.result(timeout=10)
        with public:
            frame = protocol.WsFrame(stream, b"ok \xff\xfe", text=True, fin=True)
            hostile.ws.send_binary(protocol.encode_data(frame))
            with pytest.raises(ConnectionClosed) as closed:
                public.recv(timeout=10)
        told = protocol.decode(hostile.ws.recv())
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert told == protocol.WsClose(stream, 1007, "invalid UTF-8 in a text message")


@pytest.mark.parametrize("code", [1004, 1016, 2999])
def test_a_reserved_close_code_fails_that_socket_not_the_tunnel(
    tunnel: Tunnel, hostile: RawTunnel, code: int
) -> None:
    """Issue 8, defect 7: a reserved code from the tunnel is never relayed; the public
    socket closes with 1011 and the tunnel stays up."""
    with ThreadPoolExecutor(1) as pool:
        opening = pool.submit(ws_connect, tunnel.port, f"{hostile.subdomain}.localhost", "/ws")
        stream = accept_socket(hostile)
        public = opening.result(timeout=10)
        with public:
            hostile.ws.send(protocol.encode(protocol.WsClose(stream, 1000, "x")).replace(
                '"code":1000', f'"code":{code}'
            ))  # fmt: skip
            with pytest.raises(ConnectionClosed) as closed:
                public.recv(timeout=10)
        told = protocol.decode(hostile.ws.recv())
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert told == protocol.Cancel(stream)
    # The tunnel still serves: a plain request reaches the hostile client.
    with rawclient.RawConnection(tunnel.port) as conn:
        conn.send(get(f"{hostile.subdomain}.localhost"))
        answer(hostile, [("Content-Length", "2")], b"ok")
        assert conn.read_response().body == b"ok"


# -- slow and many-connection attacks, as configured for `serve` (defect 5) -------


def test_serve_applies_the_connection_limits_and_frees_upgraded_sockets(
    launcher: Launcher,
) -> None:
    """LUMINET_HEADER_TIMEOUT and LUMINET_MAX_CONNECTIONS_PER_ADDRESS reach the server;
    WebSockets count while open and are uncounted when they close."""
    server = launcher.server(LUMINET_HEADER_TIMEOUT="1", LUMINET_MAX_CONNECTIONS_PER_ADDRESS="4")
    for _ in range(6):  # more than the cap, one after another
        RawTunnel(server.ws_url, None).ws.close()
    sockets = [RawTunnel(server.ws_url, None) for _ in range(3)]
    try:
        with PublicConnection(server.port) as slow:
            slow.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
            assert public_get(server.port, "localhost")[0].status == 503  # the fifth
            status, _ = read_head_now(slow)  # the fourth, answered 408 within 1 s
        assert status == 408
    finally:
        for raw in sockets:
            raw.ws.close()


# -- faults: a stopped client, racing claims ------------------------------------


def test_a_stopped_client_replaced_by_its_token_never_takes_the_name_back(
    launcher: Launcher, dev_token: Token, local_server, raw_tunnels: list[RawTunnel]
) -> None:
    """A client SIGSTOPped while a new connection of its token takes its subdomain: its
    old session ends without touching the new owner's entry, and once resumed the
    client learns it was replaced and exits instead of fighting for the name."""
    server = launcher.server(LUMINET_HEARTBEAT_INTERVAL=str(HEARTBEAT))
    stopped = launcher.client(server, dev_token, local_server.port)
    _, _, subdomain = stopped.wait_active()
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        new_owner = RawTunnel(server.ws_url, dev_token, subdomain=subdomain)
        raw_tunnels.append(new_owner)
        assert new_owner.subdomain == subdomain
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    assert stopped.wait_exit(timeout=15) != 0
    # Several heartbeats later the new owner still has the name and gets its traffic.
    deadline = time.monotonic() + 3 * HEARTBEAT
    while time.monotonic() < deadline:
        with rawclient.RawConnection(server.port) as conn:
            conn.send(get(f"{subdomain}.localhost"))
            answer(new_owner, [("Content-Length", "3")], b"new")
            assert conn.read_response().body == b"new"


def test_racing_claims_of_one_name_by_two_tokens_have_one_winner(
    tunnel: Tunnel, dev_token: Token, database: Database, raw_tunnels: list[RawTunnel]
) -> None:
    """Two tokens asking for the same free name at the same moment: exactly one gets it,
    the other a name of its own."""
    other = database.issue_token("e2e-race")
    wanted = uuid.uuid4().hex[:6]
    with ThreadPoolExecutor(2) as pool:
        racers = list(
            pool.map(
                lambda token: RawTunnel(tunnel.server.ws_url, token, subdomain=wanted),
                [dev_token, other],
            )
        )
    raw_tunnels.extend(racers)
    assert sorted(r.subdomain == wanted for r in racers) == [False, True]


# -- memory: a tunnel that never reads (defect 6) --------------------------------


def test_uploads_to_a_tunnel_that_stops_reading_are_all_answered(
    launcher: Launcher, dev_token: Token, local_server, raw_tunnels: list[RawTunnel]
) -> None:
    """48 uploads of 1 MiB to a tunnel client that reads nothing: the server's sends to
    it wait (or it is dropped after LUMINET_STALL_TIMEOUT), every caller is answered
    within the request timeout, and another tunnel on the server goes on serving."""
    server = launcher.server(LUMINET_STALL_TIMEOUT="2", LUMINET_REQUEST_TIMEOUT="4")
    healthy = launcher.client(server, dev_token, local_server.port, name="healthy")
    _, _, healthy_subdomain = healthy.wait_active()
    deaf = RawTunnel(server.ws_url, dev_token)
    raw_tunnels.append(deaf)
    body = os.urandom(2**20)

    def upload(_: int) -> int:
        response = rawclient.request(
            server.port, "POST", "/up", f"{deaf.subdomain}.localhost", body=body, timeout=30
        )
        return response.status

    started = time.monotonic()
    with ThreadPoolExecutor(48) as pool:
        statuses = list(pool.map(upload, range(48)))
    assert time.monotonic() - started < 20
    assert set(statuses) <= {502, 503, 504}, statuses
    assert public_get(server.port, f"{healthy_subdomain}.localhost")[0].status == 200
