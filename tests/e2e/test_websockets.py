"""WebSockets through the tunnel: a real ``websockets`` client in public, a real server locally."""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from client.protocol import MAX_WS_MESSAGE

from . import rawclient
from .conftest import Launcher, Token, Tunnel, WsTunnel
from .wslocal import CLOSE_COMMAND, HttpReply, connect

pytestmark = pytest.mark.timeout(60)

#: Seconds any one message, close or handshake may take through the tunnel.
WAIT = 10.0
#: The public server (daphne) refuses incoming messages over 1 MiB.
MEGABYTE = 1_000_000
#: Seconds the local connection may outlive a closing handshake.
LINGER = 2.0


def test_echo_text_binary_and_empty_messages(ws_tunnel: WsTunnel, uid: str) -> None:
    """Text, every byte value, and empty text and binary messages come back as sent."""
    messages: list[str | bytes] = ["hello", bytes(range(256)), "", b"", "héllo € 😀", b"\x00"]
    with connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/echo") as ws:
        echoes = []
        for message in messages:
            ws.send(message)
            echoes.append(ws.recv(timeout=WAIT))
    assert [(type(e), e) for e in echoes] == [(type(m), m) for m in messages]


def test_megabyte_messages_both_ways(ws_tunnel: WsTunnel, uid: str) -> None:
    """A 1 MB binary and a ~1 MB text message (multi-byte characters) cross whole, both ways."""
    binary = bytes(i * 7 % 251 for i in range(MEGABYTE))
    text = "aé€😀" * (MEGABYTE // 10 - 1000)  # 10 UTF-8 bytes each, split across fragments
    assert len(text.encode()) < MEGABYTE
    with connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/big") as ws:
        ws.send(binary)
        got_binary = ws.recv(timeout=WAIT)
        ws.send(text)
        got_text = ws.recv(timeout=WAIT)
    assert isinstance(got_binary, bytes) and len(got_binary) == MEGABYTE
    assert got_binary == binary
    assert isinstance(got_text, str) and got_text == text


def test_messages_up_to_the_protocol_limit_cross_whole(ws_tunnel: WsTunnel, uid: str) -> None:
    """Issue 8, defect 7: a 15 MiB message crosses both ways (daphne used to stop at
    1 MiB, against the documented 16 MiB)."""
    message = bytes(i % 251 for i in range(15 * 2**20))
    with connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/huge", max_size=None) as ws:
        ws.send(message)
        echoed = ws.recv(timeout=WAIT)
    assert echoed == message


def test_a_message_past_the_protocol_limit_is_refused_with_1009(
    ws_tunnel: WsTunnel, uid: str
) -> None:
    with (
        connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/toohuge", max_size=None) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.send(bytes(MAX_WS_MESSAGE + 1))
        ws.recv(timeout=WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_message_order_is_kept(ws_tunnel: WsTunnel, uid: str) -> None:
    """200 messages sent back to back, text and binary mixed, come back in order."""
    messages: list[str | bytes] = [
        f"message {i}" if i % 2 else f"message {i}".encode() * (i % 7 + 1) for i in range(200)
    ]
    with connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/order") as ws:
        for message in messages:
            ws.send(message)
        echoes = [ws.recv(timeout=WAIT) for _ in messages]
    assert echoes == messages


def test_path_query_and_headers_reach_local_server(ws_tunnel: WsTunnel, uid: str) -> None:
    """The handshake's exact target and headers arrive, with X-Forwarded-* set by the server."""
    target = f"/{uid}/h%20ead/ers?x=1&y=%2F&x=2&empty="
    public_host = f"{ws_tunnel.host}:{ws_tunnel.port}"
    origin = f"http://{public_host}"
    headers = {"X-Test": "value, with comma", "Cookie": "a=1; b=two"}
    with connect(
        ws_tunnel.port, ws_tunnel.host, target, origin=origin, additional_headers=headers
    ) as ws:
        ws.send("ping")
        assert ws.recv(timeout=WAIT) == "ping"
    seen = ws_tunnel.local.wait_seen(lambda s: s.path == f"/{uid}/h%20ead/ers")
    assert seen.upgraded and seen.target == target
    assert seen.values("X-Test") == ["value, with comma"]
    assert seen.values("Cookie") == ["a=1; b=two"]
    assert seen.values("Origin") == [origin]
    assert seen.values("Host") == [public_host]
    assert seen.values("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.values("X-Forwarded-Proto") == ["http"]
    assert seen.values("X-Forwarded-Host") == [public_host]


def test_subprotocol_chosen_by_local_server(ws_tunnel: WsTunnel, uid: str) -> None:
    """The client offers v2 and chat; the local server's choice (chat) is what it gets."""
    with connect(
        ws_tunnel.port, ws_tunnel.host, f"/{uid}/proto", subprotocols=["v2", "chat"]
    ) as ws:
        chosen = ws.subprotocol
    seen = ws_tunnel.local.wait_seen(lambda s: s.path == f"/{uid}/proto")
    assert [p.strip() for v in seen.values("Sec-WebSocket-Protocol") for p in v.split(",")] == [
        "v2",
        "chat",
    ]
    assert (chosen, seen.subprotocol) == ("chat", "chat")


def test_no_subprotocol_offered_none_chosen(ws_tunnel: WsTunnel, uid: str) -> None:
    """Without an offer the local server picks none, and the public client gets none."""
    with connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/noproto") as ws:
        chosen = ws.subprotocol
    seen = ws_tunnel.local.wait_seen(lambda s: s.path == f"/{uid}/noproto")
    assert (chosen, seen.subprotocol, seen.values("Sec-WebSocket-Protocol")) == (None, None, [])


def test_local_refusal_status_reaches_public_client(ws_tunnel: WsTunnel, uid: str) -> None:
    """A local server answering the handshake with 404 gives the public client a 404."""
    ws_tunnel.local.route(f"/{uid}/refused", HttpReply(404, b"no socket here"))
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/refused")
    assert refused.value.response.status_code == 404
    seen = ws_tunnel.local.wait_seen(lambda s: s.path == f"/{uid}/refused")
    assert not seen.upgraded


def test_local_refusal_headers_reach_public_client(ws_tunnel: WsTunnel, uid: str) -> None:
    """A 401 with WWW-Authenticate comes back with its header (issue 9: WsReject.headers)."""
    challenge = ("WWW-Authenticate", 'Basic realm="hmr"')
    ws_tunnel.local.route(f"/{uid}/auth", HttpReply(401, b"who?", headers=(challenge,)))
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/auth")
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers.get_all("WWW-Authenticate") == ['Basic realm="hmr"']


def test_a_success_status_instead_of_an_upgrade_is_502(ws_tunnel: WsTunnel, uid: str) -> None:
    """A local server answering the handshake with 200 (a page, not a socket) is a 502."""
    ws_tunnel.local.route(f"/{uid}/page", HttpReply(200, b"<html>"))
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/page")
    assert refused.value.response.status_code == 502


def test_no_tunnel_connected_is_502(tunnel: Tunnel, uid: str) -> None:
    """A handshake for a subdomain with no tunnel is refused with 502."""
    with pytest.raises(InvalidStatus) as refused:
        connect(tunnel.port, f"nosuch{uid}.localhost", f"/{uid}")
    assert refused.value.response.status_code == 502


def test_local_server_not_listening_is_502(
    tunnel: Tunnel, launcher: Launcher, dev_token: Token, uid: str
) -> None:
    """A handshake the client cannot forward (nothing listens locally) is refused with 502."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = launcher.client(tunnel.server, dev_token, closed_port, name="nowhere-client")
    _, _, subdomain = client.wait_active()
    with pytest.raises(InvalidStatus) as refused:
        connect(tunnel.port, f"{subdomain}.localhost", f"/{uid}")
    assert refused.value.response.status_code == 502


def test_close_code_and_reason_from_local_server(ws_tunnel: WsTunnel, uid: str) -> None:
    """The local server closing with 4321 "bye from local" is what the public client sees."""
    with connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/close") as ws:
        ws.send(f"{CLOSE_COMMAND}4321 bye from local")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT)
    received = closed.value.rcvd
    assert received is not None, f"no close frame: {closed.value!r}"
    assert (received.code, received.reason) == (4321, "bye from local")


def test_close_code_and_reason_from_public_client(ws_tunnel: WsTunnel, uid: str) -> None:
    """The public client closing with 4000 "bye from public" is what the local server sees."""
    target = f"/{uid}/closed-by-public"
    with connect(ws_tunnel.port, ws_tunnel.host, target) as ws:
        ws.send("hello")
        assert ws.recv(timeout=WAIT) == "hello"
        ws.close(4000, "bye from public")
    closed = ws_tunnel.local.wait_close_frame(target, timeout=WAIT)
    assert (closed.code, closed.reason) == (4000, "bye from public")


@pytest.mark.parametrize("closer", ["public", "local"])
def test_local_connection_ends_promptly_after_close(
    ws_tunnel: WsTunnel, uid: str, closer: str
) -> None:
    """After a closing handshake either way, the client lets go of its local connection.

    RFC 6455 section 7.1.1: the server closes TCP first and the client closes its
    end then; a client that never does keeps the local server waiting (here for its
    close timeout) and leaks a socket per WebSocket.
    """
    target = f"/{uid}/closed-by-{closer}"
    with connect(ws_tunnel.port, ws_tunnel.host, target) as ws:
        ws.send("hello")
        assert ws.recv(timeout=WAIT) == "hello"
        if closer == "public":
            ws.close(1000, "done")
        else:
            ws.send(f"{CLOSE_COMMAND}1000 done")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=WAIT)
        handshake_done = time.monotonic()
    closed = ws_tunnel.local.wait_close_frame(target, timeout=WAIT)
    assert closed.code == 1000
    ended = ws_tunnel.local.ended(target, timeout=LINGER)
    assert ended is not None, (
        f"the client's connection to the local server is still open {LINGER} s after "
        f"the closing handshake (a {closer} close)"
    )
    lingered = ended.at - handshake_done
    assert lingered < LINGER, f"the local connection ended {lingered:.1f} s after the handshake"


def test_ping_gets_pong(ws_tunnel: WsTunnel, uid: str) -> None:
    """A ping from the public client is answered, and messages still flow after it."""
    with connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/ping") as ws:
        pong = ws.ping(b"are you there")
        assert pong.wait(WAIT), f"no pong in {WAIT} s"
        ws.send("after the ping")
        assert ws.recv(timeout=WAIT) == "after the ping"


def test_tunnel_drop_closes_public_socket(
    tunnel: Tunnel, ws_tunnel: WsTunnel, launcher: Launcher, dev_token: Token, uid: str
) -> None:
    """Killing the client closes its open public WebSockets at once with 1011, not a hang."""
    client = launcher.client(tunnel.server, dev_token, ws_tunnel.local.port, name="doomed-client")
    _, _, subdomain = client.wait_active()
    with connect(tunnel.port, f"{subdomain}.localhost", f"/{uid}/doomed") as ws:
        ws.send("still here")
        assert ws.recv(timeout=WAIT) == "still here"
        client.stop(signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT)
        elapsed = time.monotonic() - killed
    received = closed.value.rcvd
    assert received is not None, f"no close frame, the connection just ended: {closed.value!r}"
    assert received.code == 1011, f"closed with {received.code} {received.reason!r}"
    assert elapsed < 5, f"the public WebSocket closed {elapsed:.1f} s after the tunnel dropped"


def test_websocket_and_http_share_one_tunnel(ws_tunnel: WsTunnel, uid: str) -> None:
    """Plain HTTP requests pass through a tunnel while a WebSocket on it keeps echoing."""
    paths = [f"/{uid}/http/{i}" for i in range(20)]
    for i, path in enumerate(paths):
        ws_tunnel.local.route(path, HttpReply(200, f"page {i}".encode()))

    def fetch(path: str) -> rawclient.Response:
        return rawclient.request(ws_tunnel.port, "GET", path, ws_tunnel.host, timeout=WAIT)

    with connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/alongside") as ws:
        with ThreadPoolExecutor(4) as pool:
            fetches = [pool.submit(fetch, path) for path in paths]
            echoed = 0
            # Echo until every HTTP request is answered, then a few more; bounded, as
            # each fetch has its own timeout.
            for i in range(10_000):
                ws.send(f"echo {i}")
                assert ws.recv(timeout=WAIT) == f"echo {i}"
                echoed += 1
                if echoed >= 10 and all(f.done() for f in fetches):
                    break
            responses = [f.result(timeout=WAIT) for f in fetches]
        ws.send(b"last")
        assert ws.recv(timeout=WAIT) == b"last"
    assert [(r.status, r.body) for r in responses] == [
        (200, f"page {i}".encode()) for i in range(20)
    ]
    assert echoed >= 10


def test_flood_to_a_stalled_local_server_is_closed_not_buffered(
    ws_tunnel: WsTunnel, uid: str
) -> None:
    """A public client sending far more than a non-reading local server takes gets 1013."""
    target = f"/{uid}/stalled"
    ws_tunnel.local.stall(target)
    message = bytes(MEGABYTE)
    with (
        connect(ws_tunnel.port, ws_tunnel.host, target) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        for _ in range(64):  # 64 MB: far beyond buffers plus the 8 MiB allowance
            ws.send(message)
        ws.recv(timeout=WAIT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
