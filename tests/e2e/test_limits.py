"""The limits with real processes: requests per tunnel (also across two processes on
Redis, and per token), tunnels per token, and failed authentications per address.

Windows are short (``WINDOW`` seconds) so a limit's recovery is seen within a test;
every wait polls with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import websocket

from client import protocol

from . import rawclient
from .conftest import Database, Launcher, Layer, Token
from .localserver import LocalServer

pytestmark = pytest.mark.timeout(90)

#: Seconds per limit window in these tests.
WINDOW = 2.0
#: Seconds between two requests while waiting for a window to end.
POLL_INTERVAL = 0.05

Send = Callable[[int], rawclient.Response]


def set_rate_limit(database: Database, token: Token, limit: int) -> None:
    """Give ``token`` (issued by the test) a rate limit of its own, as the admin would."""
    database.execute("UPDATE tokens_token SET rate_limit = %s WHERE name = %s", (limit, token.name))


def assert_rate_limited(response: rawclient.Response) -> None:
    assert response.status == 429, response
    assert response.value("Luminet-Error") == "rate-limited"
    retry_after = int(response.value("Retry-After") or "0")
    assert 1 <= retry_after <= WINDOW
    assert b"try again in" in response.body


def allowed_in_a_fresh_window(send: Send, limit: int) -> int:
    """Spend the current window's requests, wait for the next window, and return how
    many requests that window lets through (the request seeing it open included)."""
    number = 0
    for number in range(limit * 4 + 1):  # a window may end meanwhile: up to a few
        response = send(number)
        if response.status == 429:
            assert_rate_limited(response)
            break
        assert response.status == 200, response
    else:
        pytest.fail(f"no 429 after {number + 1} requests with a limit of {limit}")
    deadline = time.monotonic() + WINDOW + 10
    while (response := send(number)).status == 429:
        number += 1
        assert time.monotonic() < deadline, "the limit did not recover after its window"
        time.sleep(POLL_INTERVAL)
    allowed = 0
    while response.status == 200:
        allowed += 1
        assert allowed <= limit * 2, "the limit no longer holds"
        number += 1
        response = send(number)
    assert_rate_limited(response)
    return allowed


def test_a_tunnel_gets_429_past_its_rate_limit_and_recovers(
    launcher: Launcher, dev_token: Token, local_server: LocalServer, uid: str
) -> None:
    """LUMINET_TUNNEL_RATE_LIMIT requests pass per window, then 429 rate-limited with
    Retry-After until the window ends; then the same number pass again."""
    server = launcher.server(
        LUMINET_TUNNEL_RATE_LIMIT="4", LUMINET_LIMIT_WINDOW_SECONDS=str(WINDOW)
    )
    client = launcher.client(server, dev_token, local_server.port)
    host = f"{client.wait_active()[2]}.localhost"

    def send(number: int) -> rawclient.Response:
        return rawclient.request(server.port, "GET", f"/{uid}/{number}", host)

    assert allowed_in_a_fresh_window(send, 4) == 4
    # The tunnel's owner sees the refusals in the client's log, refused at the edge.
    _, event = client.wait_event("refused", where={"rule": "rate limit"})
    assert event["status"] == 429 and event["path"].startswith(f"/{uid}/")


def test_a_public_websocket_is_refused_with_429_past_the_rate_limit(
    launcher: Launcher, dev_token: Token, local_server: LocalServer, uid: str
) -> None:
    """The limit counts WebSocket handshakes too, and refuses them with 429."""
    server = launcher.server(LUMINET_TUNNEL_RATE_LIMIT="1", LUMINET_LIMIT_WINDOW_SECONDS="30")
    client = launcher.client(server, dev_token, local_server.port)
    host = f"{client.wait_active()[2]}.localhost"
    assert rawclient.request(server.port, "GET", f"/{uid}/first", host).status == 200
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/{uid}/socket", host=host, timeout=10
        )
    assert refused.value.status_code == 429
    headers = refused.value.resp_headers or {}
    assert headers.get("luminet-error") == "rate-limited"
    assert 1 <= int(headers.get("retry-after", "0")) <= 30


def test_a_tokens_own_rate_limit_overrides_the_servers(
    launcher: Launcher, database: Database, local_server: LocalServer, uid: str
) -> None:
    """Token.rate_limit replaces LUMINET_TUNNEL_RATE_LIMIT for that token's tunnels."""
    token = database.issue_token("e2e-rate")
    set_rate_limit(database, token, 2)
    server = launcher.server(
        LUMINET_TUNNEL_RATE_LIMIT="50", LUMINET_LIMIT_WINDOW_SECONDS=str(WINDOW)
    )
    client = launcher.client(server, token, local_server.port)
    host = f"{client.wait_active()[2]}.localhost"

    def send(number: int) -> rawclient.Response:
        return rawclient.request(server.port, "GET", f"/{uid}/{number}", host)

    assert allowed_in_a_fresh_window(send, 2) == 2


def test_without_a_rate_limit_nothing_is_refused(
    launcher: Launcher, dev_token: Token, local_server: LocalServer, uid: str
) -> None:
    """The default, 0, lets every request through."""
    server = launcher.server(LUMINET_LIMIT_WINDOW_SECONDS="30")
    client = launcher.client(server, dev_token, local_server.port)
    host = f"{client.wait_active()[2]}.localhost"
    for number in range(30):
        assert rawclient.request(server.port, "GET", f"/{uid}/{number}", host).status == 200


def test_the_rate_limit_holds_across_two_processes_on_redis(
    redis_launcher: Launcher, postgres_token: Token, local_server: LocalServer, uid: str
) -> None:
    """Requests alternating between two server processes: exactly the limit pass per
    window in all, not the limit per process."""
    limits = {"LUMINET_TUNNEL_RATE_LIMIT": "5", "LUMINET_LIMIT_WINDOW_SECONDS": str(WINDOW)}
    server_a = redis_launcher.server(name="server-a", **limits)
    server_b = redis_launcher.server(name="server-b", **limits)
    client = redis_launcher.client(server_a, postgres_token, local_server.port)
    host = f"{client.wait_active()[2]}.localhost"
    ports = (server_a.port, server_b.port)

    def send(number: int) -> rawclient.Response:
        return rawclient.request(ports[number % 2], "GET", f"/{uid}/{number}", host)

    assert allowed_in_a_fresh_window(send, 5) == 5


# -- tunnels per token -----------------------------------------------------------


def test_a_token_past_its_tunnel_limit_is_refused_until_one_closes(
    launcher: Launcher, database: Database, local_server: LocalServer, tmp_path: Path
) -> None:
    """LUMINET_TUNNELS_PER_TOKEN live tunnels per token; one more is refused at auth and
    its client exits non-zero saying why; once one closes, a new one is accepted."""
    token = database.issue_token("e2e-two-tunnels")
    server = launcher.server(LUMINET_TUNNELS_PER_TOKEN="2")
    first = launcher.client(server, token, local_server.port, home=tmp_path / "1")
    second = launcher.client(server, token, local_server.port, home=tmp_path / "2")
    first.wait_active()
    second.wait_active()
    third = launcher.client(server, token, local_server.port, home=tmp_path / "3")
    assert third.wait_exit(20) == 1, third.describe()
    assert "\n".join(third.stderr.lines) == (
        "error: the server refused the tunnel: this token has 2 tunnels open already, the "
        "most this server allows per token; close one of them, or ask the server's "
        "operator for more (LUMINET_TUNNELS_PER_TOKEN)"
    )
    first.stop()
    fourth = launcher.client(server, token, local_server.port, home=tmp_path / "4")
    fourth.wait_active()


# -- failed authentications per address ------------------------------------------


def failed_auth(ws_url: str) -> int:
    """Authenticate with a wrong token: 0 once refused as an invalid token, or the
    refused handshake's HTTP status as a negative number."""
    try:
        ws = websocket.create_connection(ws_url, timeout=10)
    except websocket.WebSocketBadStatusException as exc:
        return -exc.status_code
    try:
        ws.send(protocol.encode(protocol.Auth(token="lmn_" + "x" * 43)))
        reply = protocol.decode(ws.recv())
        assert isinstance(reply, protocol.AuthError), reply
        assert reply.code == protocol.AuthRefusal.INVALID_TOKEN, reply
        return 0
    finally:
        ws.close(timeout=2)


def test_an_address_past_its_failed_auth_limit_gets_429_until_the_window_ends(
    launcher: Launcher, layer: Layer
) -> None:
    """LUMINET_AUTH_FAILURE_LIMIT failures per address per window; past them the tunnel
    handshake is refused with 429 and Retry-After, before any token is looked at."""
    server = launcher.server(
        LUMINET_AUTH_FAILURE_LIMIT="3", LUMINET_LIMIT_WINDOW_SECONDS=str(WINDOW)
    )
    outcomes = [failed_auth(server.ws_url) for _ in range(8)]
    first_refusal = outcomes.index(-429)
    assert 3 <= first_refusal <= 6, outcomes  # a window may end meanwhile
    assert all(outcome == 0 for outcome in outcomes[:first_refusal]), outcomes
    deadline = time.monotonic() + WINDOW + 10
    while failed_auth(server.ws_url) == -429:
        assert time.monotonic() < deadline, "still refused after the window"
        time.sleep(POLL_INTERVAL)


def test_a_client_refused_for_failed_auths_says_so_and_connects_after_the_window(
    launcher: Launcher, layer: Layer, dev_token: Token, local_server: LocalServer
) -> None:
    """A client from an address past its failures is told why, waits the window out
    (Retry-After), and then connects."""
    window = 6.0
    server = launcher.server(
        LUMINET_AUTH_FAILURE_LIMIT="2", LUMINET_LIMIT_WINDOW_SECONDS=str(window)
    )
    # Windows start at multiples of their length since the epoch: fail at the start
    # of one, so the client (a process to start, slow on a busy machine) is sure to
    # try within the same window and be refused.
    deadline = time.monotonic() + window + 5
    while time.time() % window > 0.5:
        assert time.monotonic() < deadline, "no window start seen"
        time.sleep(POLL_INTERVAL)
    deadline = time.monotonic() + 10
    while failed_auth(server.ws_url) != -429:
        assert time.monotonic() < deadline, "never refused"
    client = launcher.client(server, dev_token, local_server.port)
    _, failed = client.wait_event("connect_failed", timeout=10)
    assert failed["reason"].startswith("too many failed tunnel authentications from this address")
    assert 1 <= failed["retry_in"] <= window
    client.wait_active(timeout=window + 15)
