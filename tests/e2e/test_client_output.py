"""What the client prints: the lines a person reads, and the JSON events programs read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Client

from . import rawclient
from .conftest import Launcher, Layer, Token, Tunnel, WsTunnel
from .localserver import Reply
from .streaming import Endless, http_connection
from .wslocal import connect

pytestmark = pytest.mark.timeout(60)

#: Seconds for the client to report something that already happened.
REPORT_TIMEOUT = 10.0
#: The keys of every ``exchange`` event, and those a failed one adds.
EXCHANGE_KEYS = {"event", "tunnel", "stream", "method", "path", "status", "outcome", "ms"}
EXCHANGE_KEYS |= {"bytes_in", "bytes_out"}
FAILURE_KEYS = {"failure", "reason"}


@pytest.fixture
def text_client(tunnel: Tunnel, layer: Layer, dev_token: Token, home: Path) -> Iterator[Client]:
    """A client on the shared server printing its text log, as a person runs it."""
    client = Client(
        server_url=tunnel.server.ws_url,
        local_port=tunnel.local.port,
        token=dev_token.value,
        home=home,
        log_format="text",
        name=f"text-client[{layer.name}]",
    )
    try:
        yield client
    finally:
        client.stop()


def test_text_log_shows_the_banner_and_one_line_per_request(
    text_client: Client, tunnel: Tunnel, uid: str
) -> None:
    """A person sees the URL, where it forwards, then method, path, status and time per request."""
    index, url, subdomain = text_client.wait_active()
    assert text_client.stdout.lines[index] == f"Tunnel active: {url}"
    text_client.stdout.wait_for(
        rf"^→ forwarding to http://127\.0\.0\.1:{tunnel.local.port}$", REPORT_TIMEOUT, index + 1
    )
    tunnel.local.route(f"/{uid}/logged", Reply(status=201, body=b""))
    response = rawclient.request(tunnel.port, "PUT", f"/{uid}/logged", f"{subdomain}.localhost")
    assert response.status == 201
    text_client.stdout.wait_for(rf"^PUT {{5}}/{uid}/logged  201  \d+ ms$", REPORT_TIMEOUT)
    assert not [line for line in text_client.stdout.lines if line.startswith("{")]


def test_exchange_event_has_the_head_outcome_and_byte_counts(tunnel: Tunnel, uid: str) -> None:
    """One JSON line per request, and no header value in it or anywhere else."""
    secrets = (f"Bearer {uid}-authorization", f"session={uid}-cookie")
    tunnel.local.route(f"/{uid}/json", Reply(status=201, body=b"created!"))
    headers = [("Authorization", secrets[0]), ("Cookie", secrets[1])]
    response = rawclient.request(
        tunnel.port, "PUT", f"/{uid}/json?x=1", tunnel.host, headers, b"hello"
    )
    assert response.status == 201
    _, event = tunnel.client.wait_event(
        "exchange", REPORT_TIMEOUT, where={"path": f"/{uid}/json?x=1"}
    )
    assert set(event) == EXCHANGE_KEYS, event
    assert (event["method"], event["status"], event["outcome"]) == ("PUT", 201, "finished")
    assert (event["bytes_in"], event["bytes_out"]) == (5, 8)
    assert isinstance(event["stream"], int) and event["ms"] >= 0
    output = "\n".join(tunnel.client.stdout.lines + tunnel.client.stderr.lines)
    assert not [secret for secret in secrets if secret in output]


def test_refused_exchange_event_says_why(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, refusing_port: int
) -> None:
    """Nothing listening locally: a warning when the tunnel comes up, the exchange
    fails as a local error naming the address, and the caller's page names it too."""
    client = launcher.client(tunnel.server, dev_token, refusing_port, name="refused-events")
    _, _, subdomain = client.wait_active()
    address = f"127.0.0.1:{refusing_port}"
    _, warning = client.wait_event("local_unreachable", REPORT_TIMEOUT)
    assert warning == {
        "event": "local_unreachable",
        "tunnel": "command_line",
        "forwarding": f"http://{address}",
        "reason": f"connection refused by {address}",
    }
    response = rawclient.request(tunnel.port, "GET", "/refused", f"{subdomain}.localhost")
    assert (response.status, response.value("luminet-error")) == (502, "local-refused")
    assert f"connection refused by {address}" in response.body.decode()
    _, event = client.wait_event("exchange", REPORT_TIMEOUT, where={"path": "/refused"})
    assert set(event) == EXCHANGE_KEYS | FAILURE_KEYS, event
    assert (event["status"], event["outcome"], event["failure"]) == (None, "failed", "local_error")
    assert event["reason"] == f"connection refused by {address}"


def test_a_local_server_too_slow_to_answer_is_logged_with_the_504(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, tmp_path: Path, uid: str
) -> None:
    """The server gives up after LUMINET_REQUEST_TIMEOUT: the caller gets 504, and the
    client's event says so instead of a bare 'cancelled'."""
    server = launcher.server(name="impatient", LUMINET_REQUEST_TIMEOUT="1")
    tunnel.local.route(f"/{uid}/slow", Reply(status=200, body=b"late", delay=5))
    client = launcher.client(
        server, dev_token, tunnel.local.port, name="impatient-client", home=tmp_path
    )
    _, _, subdomain = client.wait_active()
    response = rawclient.request(server.port, "GET", f"/{uid}/slow", f"{subdomain}.localhost")
    assert (response.status, response.value("luminet-error")) == (504, "local-timeout")
    _, event = client.wait_event("exchange", REPORT_TIMEOUT, where={"path": f"/{uid}/slow"})
    assert (event["failure"], event["reason"]) == ("cancelled", "504: no response within 1 s")


def test_errors_a_person_can_act_on(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, refusing_port: int, tmp_path: Path
) -> None:
    """A wrong scheme or path is named and ends the client (status 2); a server that is
    not running is said so while the client retries; a bad token says how to get one."""
    port = tunnel.server.port

    def run(server: str, token: Token = dev_token) -> Client:
        return launcher.client(server, token, tunnel.local.port, home=tmp_path, log_format="text")

    tls = run(f"wss://localhost:{port}/tunnel")
    assert tls.wait_exit(REPORT_TIMEOUT) == 2
    assert tls.stderr.lines == [
        f"error: localhost:{port} does not speak TLS; if the server is plain http, "
        f"use --server http://localhost:{port}"
    ]
    path = run(f"ws://localhost:{port}/nope")
    assert path.wait_exit(REPORT_TIMEOUT) == 2
    assert path.stderr.lines == [
        f"error: ws://localhost:{port}/nope is not a Luminet tunnel endpoint (it answered "
        "403 Forbidden); --server takes the server's base URL, such as https://tunnel.example.com"
    ]
    down = run(f"ws://127.0.0.1:{refusing_port}/tunnel")
    down.stdout.wait_for(
        rf"^Cannot connect \(127\.0\.0\.1:{refusing_port} refused the connection; is the "
        r"server running\?\); retrying in \d+\.\d s$",
        REPORT_TIMEOUT,
    )
    down.stop()
    bad = run(tunnel.server.ws_url, Token("bad", "lmn_" + "x" * 43))
    assert bad.wait_exit(REPORT_TIMEOUT) == 3
    assert bad.stderr.lines == [
        "error: the server refused the tunnel: invalid token",
        "hint: get a token from the server's operator (manage.py issue_token, or the "
        "admin's Tokens page) and pass it in TUNNEL_TOKEN, ~/.tunnel/config or --token",
    ]


def test_public_client_leaving_fails_the_exchange_as_cancelled(tunnel: Tunnel, uid: str) -> None:
    """A public client that hangs up mid-response: the exchange fails as cancelled."""
    path = f"/{uid}/leaving"
    tunnel.local.stream(path, Endless())
    conn = http_connection(tunnel.port, timeout=REPORT_TIMEOUT)
    try:
        conn.request("GET", path, headers={"Host": tunnel.host})
        response = conn.getresponse()
        assert response.status == 200
        assert response.read1(1024), "no event arrived"
    finally:
        conn.close()
    _, event = tunnel.client.wait_event("exchange", REPORT_TIMEOUT, where={"path": path})
    assert (event["status"], event["outcome"], event["failure"]) == (200, "failed", "cancelled")
    assert event["bytes_out"] > 0


def test_websocket_events_from_open_to_close(ws_tunnel: WsTunnel, uid: str) -> None:
    """An open line, then one line when it ends: who closed, the code, messages and bytes."""
    path = f"/{uid}/events"
    with connect(ws_tunnel.port, ws_tunnel.host, path) as ws:
        ws.send("hello")
        assert ws.recv(timeout=REPORT_TIMEOUT) == "hello"
        ws.close(code=1000, reason="done")
    client = ws_tunnel.client
    opened, event = client.wait_event("websocket_open", REPORT_TIMEOUT, where={"path": path})
    _, end = client.wait_event("websocket", REPORT_TIMEOUT, opened, where={"path": path})
    assert end["stream"] == event["stream"]
    assert (end["outcome"], end["closed_by"], end["code"]) == ("closed", "public", 1000)
    assert (end["messages_in"], end["messages_out"], end["bytes_in"], end["bytes_out"]) == (
        1,
        1,
        5,
        5,
    )
