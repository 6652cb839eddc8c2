"""Tokens at the tunnel's door: unknown and revoked ones are refused, without retries."""

from __future__ import annotations

import pytest

from harness import Client

from . import rawclient
from .conftest import Database, Launcher, Token, Tunnel
from .localserver import LocalServer

pytestmark = pytest.mark.timeout(60)

#: The CLI's exit status when the server refuses the token.
EXIT_AUTH_FAILED = 3
#: Seconds for a refused client to give up.
REFUSAL_TIMEOUT = 20


def assert_refused(client: Client, token: Token) -> None:
    """The client exited with the auth status, said why on stderr, never printed the token."""
    status = client.wait_exit(REFUSAL_TIMEOUT)
    assert status == EXIT_AUTH_FAILED, client.describe()
    stderr = "\n".join(client.stderr.lines)
    assert "invalid token" in stderr.lower(), client.describe()
    assert token.value not in stderr
    assert token.value not in "\n".join(client.stdout.lines)


def test_unknown_token_is_refused(launcher: Launcher, tunnel: Tunnel) -> None:
    """A token the server never issued: an error on stderr, exit 3, no reconnection attempts."""
    token = Token("unknown", "lmn_" + "x" * 43)
    client = launcher.client(tunnel.server, token, tunnel.local.port, name="unknown-token")
    assert_refused(client, token)
    assert not client.events("tunnel_active")
    assert not client.events("tunnel_down")  # it never tried again


def test_token_flag(launcher: Launcher, tunnel: Tunnel, dev_token: Token, uid: str) -> None:
    """--token works like TUNNEL_TOKEN, and the token is never printed."""
    client = launcher.client(
        tunnel.server, dev_token, tunnel.local.port, token_flag=True, name="flag-client"
    )
    _, _, subdomain = client.wait_active()
    response = rawclient.request(tunnel.port, "GET", f"/{uid}/flag", f"{subdomain}.localhost")
    assert (response.status, response.body) == (200, b"ok")
    assert dev_token.value not in "\n".join(client.stdout.lines + client.stderr.lines)


def test_revoked_token_cannot_connect(
    launcher: Launcher, tunnel: Tunnel, database: Database, local_server: LocalServer
) -> None:
    """After revoke_token, a new client with that token is refused."""
    token = database.issue_token("e2e-revoked")
    before = launcher.client(tunnel.server, token, local_server.port, name="before-revoke")
    before.wait_active()
    before.stop()
    database.revoke_token(token)
    after = launcher.client(tunnel.server, token, local_server.port, name="after-revoke")
    assert_refused(after, token)


@pytest.mark.timeout(60)
def test_revoking_closes_live_tunnel(
    launcher: Launcher, database: Database, local_server: LocalServer, uid: str
) -> None:
    """A live tunnel whose token is revoked is closed at its next heartbeat; its client stops."""
    server = launcher.server(name="heartbeat-server", LUMINET_HEARTBEAT_INTERVAL="1")
    token = database.issue_token("e2e-live-revoke")
    client = launcher.client(server, token, local_server.port, name="live-revoke")
    _, _, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"
    assert rawclient.request(server.port, "GET", f"/{uid}/live", host).status == 200
    database.revoke_token(token)
    status = client.wait_exit(20)
    assert status == EXIT_AUTH_FAILED, client.describe()
    response = rawclient.request(server.port, "GET", f"/{uid}/gone", host)
    assert response.status == 502
    assert response.value("Luminet-Error") == "tunnel-not-found"
