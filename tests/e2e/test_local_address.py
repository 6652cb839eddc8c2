"""Reaching the local server as dev servers listen today, and showing it the Host it wants.

A dev server bound only to ``::1`` (recent Node and Vite) is reached through
``--host localhost`` although ``localhost`` may resolve to ``127.0.0.1`` alone;
``--host-header rewrite`` shows it ``Host: localhost:PORT`` (what Vite, webpack,
Django and Rails accept) while ``X-Forwarded-Host`` keeps the public host.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from . import rawclient
from .conftest import Launcher, Token, Tunnel
from .localserver import LocalServer

pytestmark = pytest.mark.timeout(60)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def ipv6_only_server() -> Iterator[LocalServer]:
    if not _has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    server = LocalServer(host="::1")
    try:
        yield server
    finally:
        server.stop()


def test_a_server_on_ipv6_loopback_only_is_reached_through_localhost_with_its_host(
    launcher: Launcher,
    tunnel: Tunnel,
    dev_token: Token,
    ipv6_only_server: LocalServer,
    tmp_path,
    uid: str,
) -> None:
    local = ipv6_only_server
    client = launcher.client(
        tunnel.server,
        dev_token,
        local.port,
        args=["--host", "localhost", "--host-header", "rewrite"],
        home=tmp_path,
    )
    _, _, subdomain = client.wait_active()
    public_host = f"{subdomain}.localhost"
    response = rawclient.request(tunnel.port, "GET", f"/{uid}/v6", public_host)
    assert (response.status, response.body) == (200, b"ok")
    seen = local.wait_for(lambda r: r.target == f"/{uid}/v6")
    assert seen.values("host") == [f"localhost:{local.port}"]
    assert seen.values("x-forwarded-host") == [public_host]


def test_a_host_header_value_is_sent_as_given_and_preserve_keeps_the_public_one(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, tmp_path, uid: str
) -> None:
    fixed = launcher.client(
        tunnel.server,
        dev_token,
        tunnel.local.port,
        args=["--host-header", "app.test:8080"],
        home=tmp_path,
    )
    _, _, subdomain = fixed.wait_active()
    rawclient.request(tunnel.port, "GET", f"/{uid}/fixed", f"{subdomain}.localhost")
    seen = tunnel.local.wait_for(lambda r: r.target == f"/{uid}/fixed")
    assert seen.values("host") == ["app.test:8080"]

    rawclient.request(tunnel.port, "GET", f"/{uid}/kept", tunnel.host)
    kept = tunnel.local.wait_for(lambda r: r.target == f"/{uid}/kept")
    assert kept.values("host") == [tunnel.host]


def test_an_invalid_host_header_value_is_refused_before_connecting(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, tmp_path
) -> None:
    client = launcher.client(
        tunnel.server,
        dev_token,
        tunnel.local.port,
        args=["--host-header", "a b\r\nX-Evil: 1"],
        home=tmp_path,
    )
    assert client.wait_exit(20) == 2
    assert "\n".join(client.stderr.lines) == (
        "error: --host-header 'a b\\r\\nX-Evil: 1': use preserve, rewrite, or a host name "
        "such as example.test:8080"
    )
