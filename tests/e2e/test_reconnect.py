"""A client that loses its connection reconnects and gets its subdomain back."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from . import rawclient
from .conftest import Launcher, Token, Tunnel
from .localserver import LocalServer
from .tcpproxy import TCPProxy

pytestmark = pytest.mark.timeout(90)

#: Seconds for the client to notice a drop, back off and reconnect.
RECONNECT_TIMEOUT = 30


@pytest.fixture
def proxy(tunnel: Tunnel) -> Iterator[TCPProxy]:
    """A cuttable TCP path from a client to the shared server."""
    proxy = TCPProxy(tunnel.server.port)
    try:
        yield proxy
    finally:
        proxy.close()


def assert_forwards(port: int, host: str, path: str) -> None:
    response = rawclient.request(port, "GET", path, host)
    assert (response.status, response.body) == (200, b"ok"), response


def test_dropped_connection_gets_subdomain_back(
    launcher: Launcher, tunnel: Tunnel, proxy: TCPProxy, dev_token: Token, uid: str
) -> None:
    """After a network drop the server holds the subdomain, and the client gets it back."""
    client = launcher.client(
        f"ws://127.0.0.1:{proxy.port}/tunnel", dev_token, tunnel.local.port, name="proxied"
    )
    first, url, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"
    assert_forwards(tunnel.port, host, f"/{uid}/before")

    assert proxy.cut() > 0
    down = client.wait_down(start=first, timeout=RECONNECT_TIMEOUT)
    _, url_again, _ = client.wait_active(start=down, timeout=RECONNECT_TIMEOUT)

    assert url_again == url
    assert_forwards(tunnel.port, host, f"/{uid}/after")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "crash"])
def test_server_restart_keeps_subdomain(
    launcher: Launcher,
    local_server: LocalServer,
    dev_token: Token,
    uid: str,
    stop_signal: signal.Signals,
) -> None:
    """Stop or kill the server, start a new one on the same port: the client keeps its URL."""
    server = launcher.server(name="first-server")
    client = launcher.client(server, dev_token, local_server.port, name="restart-client")
    first, url, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"
    assert_forwards(server.port, host, f"/{uid}/before")

    server.stop(stop_signal)
    down = client.wait_down(start=first, timeout=RECONNECT_TIMEOUT)
    restarted = launcher.server(port=server.port, name="second-server")
    _, url_again, _ = client.wait_active(start=down, timeout=RECONNECT_TIMEOUT)

    assert url_again == url, launcher.describe()
    assert_forwards(restarted.port, host, f"/{uid}/after")
