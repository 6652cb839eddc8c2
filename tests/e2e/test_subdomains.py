"""Who gets a subdomain: never another token's live tunnel or hold; anyone after the grace.

These speak the wire protocol directly (``client.protocol`` over websocket-client),
because the CLI only ever asks for its own previous subdomain.
"""

from __future__ import annotations

import time

import pytest

from client import protocol

from . import rawclient
from .conftest import Database, Launcher, Token, Tunnel
from .rawtunnel import RawTunnel

pytestmark = pytest.mark.timeout(60)

GRACE = 2.0
#: Seconds between claim attempts while waiting for a hold to expire.
POLL_INTERVAL = 0.2


@pytest.fixture(scope="session")
def other_token(database: Database) -> Token:
    return database.issue_token("e2e-other")


def test_auth_ok_carries_subdomain_and_url(
    tunnel: Tunnel, other_token: Token, raw_tunnels: list[RawTunnel]
) -> None:
    """auth_ok names a fresh 6-character subdomain and its public URL."""
    raw = RawTunnel(tunnel.server.ws_url, other_token, None)
    raw_tunnels.append(raw)
    assert protocol.SUBDOMAIN_RE.fullmatch(raw.subdomain)
    assert raw.url == f"http://{raw.subdomain}.localhost"


def test_live_subdomain_is_not_given_to_another_token(
    tunnel: Tunnel, other_token: Token, raw_tunnels: list[RawTunnel], uid: str
) -> None:
    """Asking for another token's live subdomain gets a different one; the owner keeps serving."""
    raw = RawTunnel(tunnel.server.ws_url, other_token, tunnel.subdomain)
    raw_tunnels.append(raw)
    assert raw.subdomain != tunnel.subdomain
    response = rawclient.request(tunnel.port, "GET", f"/{uid}/owner", tunnel.host)
    assert (response.status, response.body) == (200, b"ok")


def test_hold_lasts_the_grace_period(
    launcher: Launcher,
    dev_token: Token,
    other_token: Token,
    raw_tunnels: list[RawTunnel],
) -> None:
    """A disconnected tunnel's subdomain is kept from other tokens for the grace, then freed."""
    server = launcher.server(name="grace-server", LUMINET_SUBDOMAIN_GRACE=str(GRACE))
    owner = RawTunnel(server.ws_url, dev_token, None)
    held = owner.subdomain
    closed_at = time.monotonic()
    owner.close()

    intruder = RawTunnel(server.ws_url, other_token, held)
    raw_tunnels.append(intruder)
    assert intruder.subdomain != held

    deadline = closed_at + GRACE + 15
    while True:
        attempt = RawTunnel(server.ws_url, other_token, held)
        raw_tunnels.append(attempt)
        if attempt.subdomain == held:
            break
        assert time.monotonic() < deadline, f"{held} still held {GRACE + 15} s after closing"
        time.sleep(POLL_INTERVAL)
    assert time.monotonic() - closed_at >= GRACE * 0.9
