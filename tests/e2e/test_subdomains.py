"""Who gets a subdomain: never another token's live tunnel or hold; anyone after the grace.

The first tests speak the wire protocol directly (``client.protocol`` over
websocket-client) to ask for names as any client could; the last ones run the CLI
with ``--subdomain`` and with the name it remembers.
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


# -- the CLI: --subdomain and remembered names -------------------------------

#: The CLI's exit status when the subdomain asked for is refused.
EXIT_NAME_REFUSED = 4
EXIT_CONFIG = 2


def stderr_of(client) -> str:
    return "\n".join(client.stderr.lines)


def test_a_subdomain_asked_for_is_granted(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, tmp_path, uid: str
) -> None:
    name = f"app-{uid[:8]}"
    client = launcher.client(
        tunnel.server, dev_token, tunnel.local.port, args=["--subdomain", name], home=tmp_path
    )
    _, url, subdomain = client.wait_active()
    assert (subdomain, url) == (name, f"http://{name}.localhost")
    response = rawclient.request(tunnel.port, "GET", f"/{uid}/named", f"{name}.localhost")
    assert (response.status, response.body) == (200, b"ok")


def test_a_subdomain_held_by_another_token_is_refused_with_exit_4(
    launcher: Launcher,
    tunnel: Tunnel,
    dev_token: Token,
    other_token: Token,
    raw_tunnels: list[RawTunnel],
    tmp_path,
    uid: str,
) -> None:
    name = f"held-{uid[:8]}"
    raw_tunnels.append(RawTunnel(tunnel.server.ws_url, other_token, name, required=True))
    client = launcher.client(
        tunnel.server, dev_token, tunnel.local.port, args=["--subdomain", name], home=tmp_path
    )
    assert client.wait_exit(20) == EXIT_NAME_REFUSED, client.describe()
    assert stderr_of(client) == (
        f"error: subdomain refused: '{name}' is in use by another tunnel (or was, by another "
        "token, less than 60 s ago); choose another name with --subdomain"
    )


def test_a_blocked_subdomain_is_refused_with_exit_4(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, tmp_path
) -> None:
    client = launcher.client(
        tunnel.server, dev_token, tunnel.local.port, args=["--subdomain", "admin"], home=tmp_path
    )
    assert client.wait_exit(20) == EXIT_NAME_REFUSED, client.describe()
    assert stderr_of(client) == (
        "error: subdomain refused: 'admin' is not available on this server; "
        "choose another name with --subdomain"
    )


def test_an_invalid_subdomain_is_refused_before_connecting(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, tmp_path
) -> None:
    client = launcher.client(
        tunnel.server, dev_token, tunnel.local.port, args=["--subdomain", "My_App"], home=tmp_path
    )
    assert client.wait_exit(20) == EXIT_CONFIG, client.describe()
    assert stderr_of(client) == "error: --subdomain 'My_App': a subdomain is written in lower case"


def test_a_restarted_client_gets_its_last_subdomain_back(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, tmp_path, uid: str
) -> None:
    """Without --subdomain, a restart on the same server and port asks for the name it
    had, remembered under ~/.tunnel/, and gets it (its own hold)."""
    first = launcher.client(tunnel.server, dev_token, tunnel.local.port, home=tmp_path)
    _, _, subdomain = first.wait_active()
    first.stop()
    second = launcher.client(tunnel.server, dev_token, tunnel.local.port, home=tmp_path)
    assert second.wait_active()[2] == subdomain
    response = rawclient.request(tunnel.port, "GET", f"/{uid}/again", f"{subdomain}.localhost")
    assert (response.status, response.body) == (200, b"ok")


def test_a_second_client_on_the_same_port_does_not_take_the_first_ones_name(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, tmp_path, uid: str
) -> None:
    """The remembered name is a preference: while its tunnel is live, another client
    of the same token and port gets a name of its own, and the first keeps serving."""
    first = launcher.client(tunnel.server, dev_token, tunnel.local.port, home=tmp_path)
    _, _, subdomain = first.wait_active()
    first.stop()
    again = launcher.client(tunnel.server, dev_token, tunnel.local.port, home=tmp_path)
    assert again.wait_active()[2] == subdomain
    second = launcher.client(tunnel.server, dev_token, tunnel.local.port, home=tmp_path)
    assert second.wait_active()[2] != subdomain
    response = rawclient.request(tunnel.port, "GET", f"/{uid}/first", f"{subdomain}.localhost")
    assert (response.status, response.body) == (200, b"ok")
    assert again.running()
    # The second client did not overwrite the name webhooks know: the next restart
    # of the port's client gets the first one's name back.
    second.stop()
    again.stop()
    third = launcher.client(tunnel.server, dev_token, tunnel.local.port, home=tmp_path)
    assert third.wait_active()[2] == subdomain
