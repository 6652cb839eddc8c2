"""The audit's attacks (issue 8), each asserting the documented answer and that another
tunnel on the same server is unaffected.

A malicious tunnel client is a raw WebSocket with a valid token; a hostile public
caller is a raw socket. Faults use a private ``redis-server``, never the shared one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from client import protocol

from . import rawclient
from .conftest import Database, Launcher, Layer, Token, Tunnel
from .localserver import Reply
from .redisserver import PrivateRedis

pytestmark = pytest.mark.timeout(90)

#: Heartbeat of the servers these tests start, so a zombie heartbeat shows in seconds.
HEARTBEAT = 1.0
#: An answer slower than this is waiting on a dead channel, not refusing at once.
FAST = 3.0


class RawTunnel:
    """A tunnel WebSocket driven by hand: it sends what the test says, nothing else."""

    def __init__(self, ws_url: str, token: Token | None) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=15)
        self.subdomain = ""
        if token is not None:
            self.ws.send(protocol.encode(protocol.Auth(token=token.value)))
            reply = protocol.decode(self.ws.recv())
            assert isinstance(reply, protocol.AuthOk), reply
            self.subdomain = reply.subdomain

    def close_code(self) -> int | None:
        """Read until the server's close frame; return its code."""
        while True:
            opcode, payload = self.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None

    def close(self) -> None:
        self.ws.shutdown()


@pytest.fixture
def raw_tunnels() -> Iterator[list[RawTunnel]]:
    opened: list[RawTunnel] = []
    try:
        yield opened
    finally:
        for raw in opened:
            raw.close()


def public_get(port: int, host: str) -> tuple[rawclient.Response, float]:
    started = time.monotonic()
    response = rawclient.request(port, "GET", "/", host, timeout=30)
    return response, time.monotonic() - started


def assert_not_found_for(port: int, host: str, seconds: float) -> None:
    """For ``seconds``, every request to ``host`` is a fast 502 tunnel-not-found."""
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
    assert raw.close_code() == protocol.CLOSE_PROTOCOL_ERROR
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
    assert raw.close_code() == protocol.CLOSE_PROTOCOL_ERROR
    assert_not_found_for(server.port, f"{raw.subdomain}.localhost", 4 * HEARTBEAT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def test_channel_layer_failure_closes_the_tunnel_and_leaves_no_zombie(
    database: Database, home: Path, private_redis: PrivateRedis, raw_tunnels: list[RawTunnel]
) -> None:
    """Redis dying under a live tunnel closes it with 1011; once Redis is back (empty),
    its subdomain is free and answers a fast 502, and new tunnels connect."""
    layer = Layer("private-redis", {"REDIS_URL": private_redis.url})
    launcher = Launcher(database, layer, home)
    try:
        server = launcher.server(LUMINET_HEARTBEAT_INTERVAL=str(HEARTBEAT))
        token = database.issue_token("e2e-fault")
        raw = RawTunnel(server.ws_url, token)
        raw_tunnels.append(raw)
        private_redis.stop()
        assert raw.close_code() == 1011
        private_redis.start()
        assert_not_found_for(server.port, f"{raw.subdomain}.localhost", 4 * HEARTBEAT)
        again = RawTunnel(server.ws_url, token)
        raw_tunnels.append(again)
        assert again.subdomain
    finally:
        launcher.close()


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
