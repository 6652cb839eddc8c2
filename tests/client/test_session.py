"""The tunnel's WebSocket against a scripted server: what is left once the server closes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import websocket
from websockets.sync.server import Server, ServerConnection, serve

from client import protocol
from client.config import Config
from client.errors import ConnectionLost
from client.events import Events
from client.keeper import authenticate
from client.session import Tunnel

pytestmark = pytest.mark.timeout(30)


def _accept_then_close(conn: ServerConnection) -> None:
    """Authenticate the tunnel, then close it as the server does (a close frame)."""
    conn.recv()
    conn.send(protocol.encode(protocol.AuthOk(subdomain="abc123", url="http://abc123.localhost")))
    conn.close(1001, "going away")


@pytest.fixture
def closing_server() -> Iterator[Server]:
    with serve(_accept_then_close, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join(5)


def test_a_tunnel_the_server_closes_closes_its_socket(closing_server: Server) -> None:
    """After the server's close frame the client's socket is closed, not left for the GC."""
    port = closing_server.socket.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/tunnel"
    config = Config(server=url, token="t", local_host="127.0.0.1", local_port=9)
    ws = websocket.create_connection(url, timeout=5, enable_multithread=True)
    _, latency = authenticate(ws, config.token, None)
    # The ping sent before auth came back: the round trip is known from the start.
    assert latency is not None and 0 < latency < 5
    with pytest.raises(ConnectionLost, match="1001"):
        Tunnel(ws, config, Events()).run()
    assert ws.sock is None
