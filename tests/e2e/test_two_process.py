"""Two server processes on one Redis: a tunnel on one serves requests landing on the other."""

from __future__ import annotations

import os
import signal
import time

import pytest

from . import rawclient
from .conftest import Launcher, Token
from .localserver import LocalServer, Reply
from .streaming import ABORTED, CHUNK, Download, http_connection, read_digest

pytestmark = pytest.mark.timeout(60)


def test_request_to_other_process_reaches_tunnel(
    redis_launcher: Launcher, local_server: LocalServer, postgres_token: Token, uid: str
) -> None:
    """Client on server A; public requests to server B are answered by the local server."""
    server_a = redis_launcher.server(name="server-a")
    server_b = redis_launcher.server(name="server-b")
    client = redis_launcher.client(server_a, postgres_token, local_server.port, name="client-on-a")
    _, _, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"

    upload = os.urandom(300 * 1024) + bytes(range(256))
    download = os.urandom(2 * 1024 * 1024)
    local_server.route(
        f"/{uid}/via-b", Reply(status=201, headers=(("X-From", "local"),), body=download)
    )
    response = rawclient.request(server_b.port, "POST", f"/{uid}/via-b?q=1", host, body=upload)

    assert response.status == 201, redis_launcher.describe()
    assert response.values("X-From") == ["local"]
    assert response.body == download
    seen = local_server.only(f"/{uid}/via-b")
    assert (seen.target, seen.body) == (f"/{uid}/via-b?q=1", upload)

    on_a = rawclient.request(server_a.port, "GET", f"/{uid}/via-a", host)
    assert (on_a.status, on_a.body) == (200, b"ok")
    missing = rawclient.request(server_b.port, "GET", "/", "no-such-tunnel.localhost")
    assert missing.status == 502
    assert missing.value("Luminet-Error") == "tunnel-not-found"


def test_response_through_other_process_ends_when_tunnel_server_dies(
    redis_launcher: Launcher, local_server: LocalServer, postgres_token: Token, uid: str
) -> None:
    """Server A dies mid-response without telling anyone: server B cuts the response.

    Nothing arrives on the stream any more, so only B's liveness check can end it:
    A's registry entry expires (3 heartbeats, 3 s here) and the check (every 5 s)
    finds the subdomain no longer served by A's consumer.
    """
    server_a = redis_launcher.server(name="server-a", LUMINET_HEARTBEAT_INTERVAL="1")
    server_b = redis_launcher.server(name="server-b", LUMINET_HEARTBEAT_INTERVAL="1")
    client = redis_launcher.client(server_a, postgres_token, local_server.port, name="client-on-a")
    _, _, subdomain = client.wait_active()
    path = f"/{uid}/slow-download"
    local_server.stream(path, Download(50 * 1024 * 1024, rate=1024 * 1024))
    conn = http_connection(server_b.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"{subdomain}.localhost"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.read1(CHUNK), "no body arrived"
        server_a.stop(signal.SIGKILL)
        client.stop(signal.SIGKILL)  # so it cannot reconnect and claim the name elsewhere
        started = time.monotonic()
        with pytest.raises(ABORTED):
            read_digest(response, limit=50 * 1024 * 1024)
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    assert elapsed < 15, f"server B cut the response after {elapsed:.1f} s"
