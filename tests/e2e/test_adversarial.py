"""The audit's attacks (issue 8), each asserting the documented answer and that another
tunnel on the same server is unaffected.

A malicious tunnel client is a raw WebSocket with a valid token; a hostile public
caller is a raw socket. Faults use a private ``redis-server``, never the shared one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from client import protocol

from . import rawclient
from .conftest import Database, Launcher, Layer, Token, Tunnel
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
