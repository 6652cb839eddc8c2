"""The memory budget, the stall timer and the stream cap, against real processes.

A hostile public caller is a raw socket that speaks just enough WebSocket to open
one and then misbehaves: it leaves messages unfinished, or stops reading. Each
test starts its own server with the limit set low, and checks that another
tunnel, or the same one afterwards, is served as before.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from client.protocol import CloseCode

from . import http1, rawclient
from .conftest import Launcher, Token
from .localserver import Incoming, LocalServer
from .wslocal import WsLocalServer, connect

pytestmark = pytest.mark.timeout(60)

MIB = 2**20
#: Seconds any one answer, handshake or echo may take.
WAIT = 10.0
#: An answer slower than this waited on something instead of refusing at once.
FAST = 3.0
#: LUMINET_TUNNEL_MEMORY_BUDGET of the budget test: three unfinished 1 MiB messages.
TUNNEL_BUDGET = 3 * MIB
#: LUMINET_STALL_TIMEOUT of the stall test, in seconds.
STALL = 2


class RawWebSocket:
    """A public WebSocket opened byte by byte, whose frames the test writes itself."""

    def __init__(self, port: int, host: str, target: str, *, rcvbuf: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._buffer = b""
        try:
            if rcvbuf:
                # Before connecting, so the window the kernel offers is small from the start.
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(WAIT)
            self.sock.connect(("127.0.0.1", port))
            self._handshake(host, target)
        except BaseException:
            self.sock.close()
            raise

    def _handshake(self, host: str, target: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 101 "), head.decode("latin-1")

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"the server sent nothing more in {WAIT} s") from None
        if not data:
            raise AssertionError("the server closed the connection")
        return data

    def start_message(self, length: int, payload: bytes) -> None:
        """Send a binary frame's head declaring ``length`` bytes (fin=0), then ``payload``."""
        assert length > 0xFFFF, "only the 64-bit length form is written here"
        # RFC 6455 section 5.2: FIN=0, opcode 2; MASK=1, length 127 then 64 bits; then
        # the masking key. A zero key leaves the payload as it is.
        self.sock.sendall(struct.pack("!BBQ4s", 0x02, 0x80 | 127, length, bytes(4)) + payload)

    def close_code(self) -> int:
        """Read frames until the server's close frame; return its status code."""
        while True:
            opcode, payload = self._frame()
            if opcode == 0x8:
                assert len(payload) >= 2, f"a close frame without a code: {payload!r}"
                code: int = struct.unpack("!H", payload[:2])[0]
                return code

    def _frame(self) -> tuple[int, bytes]:
        """The next (unmasked) frame from the server: opcode and payload."""
        head = self._take(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._take(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._take(8))[0]
        return head[0] & 0x0F, self._take(length)

    def _take(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._recv()
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        return taken

    def waiting(self) -> bool:
        """Whether the server has sent anything not yet read (a close frame, say)."""
        if self._buffer:
            return True
        self.sock.settimeout(0)
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(WAIT)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_sockets() -> Iterator[list[RawWebSocket]]:
    """Public WebSockets a test opens by hand; all closed afterwards."""
    opened: list[RawWebSocket] = []
    try:
        yield opened
    finally:
        for raw in opened:
            raw.close()


def echo(port: int, host: str, target: str, message: bytes) -> bytes | None:
    """``message`` sent and echoed on a new WebSocket; None if it was closed with 1013."""
    try:
        with connect(port, host, target, max_size=None) as ws:
            ws.send(message)
            answer = ws.recv(timeout=WAIT)
    except ConnectionClosed as closed:
        if closed.rcvd is not None and closed.rcvd.code == CloseCode.TRY_AGAIN_LATER:
            return None
        raise
    assert isinstance(answer, bytes)
    return answer


def test_unfinished_messages_past_a_tunnel_budget_get_1013(
    launcher: Launcher,
    dev_token: Token,
    ws_local: WsLocalServer,
    uid: str,
    raw_sockets: list[RawWebSocket],
) -> None:
    """Three unfinished 1 MiB messages fill a 3 MiB tunnel budget and a fourth socket is
    closed with 1013; another tunnel on the server still echoes a whole budget's worth,
    and once the three close, so does the first."""
    server = launcher.server(LUMINET_TUNNEL_MEMORY_BUDGET=str(TUNNEL_BUDGET))
    crowded = launcher.client(server, dev_token, ws_local.port, name="crowded-client")
    other = launcher.client(server, dev_token, ws_local.port, name="other-client")
    crowded_host = f"{crowded.wait_active()[2]}.localhost"
    other_host = f"{other.wait_active()[2]}.localhost"

    def unfinished(name: str) -> RawWebSocket:
        raw = RawWebSocket(server.port, crowded_host, f"/{uid}/{name}")
        raw_sockets.append(raw)
        raw.start_message(MIB, b"a few bytes")
        return raw

    # Each handshake is a round trip through the tunnel, begun once the frame head
    # before it is on its way: the server charges them in this order.
    held = [unfinished(f"held-{i}") for i in range(3)]
    refused = unfinished("refused")
    assert refused.close_code() == CloseCode.TRY_AGAIN_LATER
    refused.close()
    assert [raw.waiting() for raw in held] == [False] * 3, "3 MiB is not over a 3 MiB budget"

    whole_budget = os.urandom(TUNNEL_BUDGET)
    assert echo(server.port, other_host, f"/{uid}/other", whole_budget) == whole_budget

    for raw in held:
        raw.close()
    # The server learns of the closes on its own time: try until the budget is back.
    deadline = time.monotonic() + WAIT
    while (echoed := echo(server.port, crowded_host, f"/{uid}/again", whole_budget)) is None:
        assert time.monotonic() < deadline, f"the budget was not handed back in {WAIT} s"
    assert echoed == whole_budget


def test_unfinished_messages_to_the_tunnel_endpoint_close_no_tunnel(
    launcher: Launcher,
    dev_token: Token,
    local_server: LocalServer,
    raw_sockets: list[RawWebSocket],
) -> None:
    """Messages to the tunnel endpoint larger than any protocol message are refused with
    1009 as they begin, and never charged to the host every tunnel client connects to:
    the tunnels stay up and serve (they were closed with 1013 "server busy")."""
    server = launcher.server(LUMINET_TUNNEL_MEMORY_BUDGET=str(TUNNEL_BUDGET))
    client = launcher.client(server, dev_token, local_server.port)
    host = f"{client.wait_active()[2]}.localhost"
    endpoint_host = f"127.0.0.1:{server.port}"  # the Host the client connects with
    for _ in range(4):
        raw = RawWebSocket(server.port, endpoint_host, "/tunnel")
        raw_sockets.append(raw)
        raw.start_message(MIB, b"a few bytes")
    # Within AUTH_TIMEOUT, before the server closes the four for never authenticating.
    response = rawclient.request(server.port, "GET", "/", host, timeout=WAIT)
    assert (response.status, response.value("Luminet-Error")) == (200, None)
    assert client.events("tunnel_down") == []
    # The endpoint never needs a message larger than the protocol's: refused, not held.
    assert [raw.close_code() for raw in raw_sockets] == [1009] * 4


def test_a_public_websocket_that_stops_reading_is_dropped(
    launcher: Launcher,
    dev_token: Token,
    ws_local: WsLocalServer,
    uid: str,
    raw_sockets: list[RawWebSocket],
) -> None:
    """A public peer that reads nothing of a flood is dropped once LUMINET_STALL_TIMEOUT
    has passed, which ends the local WebSocket; the server serves on."""
    server = launcher.server(LUMINET_STALL_TIMEOUT=str(STALL))
    client = launcher.client(server, dev_token, ws_local.port)
    host = f"{client.wait_active()[2]}.localhost"
    target = f"/{uid}/flood"
    ws_local.flood(target)
    opening = time.monotonic()
    raw_sockets.append(RawWebSocket(server.port, host, target, rcvbuf=4096))
    ended = ws_local.ended(target, timeout=STALL + WAIT)
    assert ended is not None, f"the local WebSocket was still open {STALL + WAIT} s on"
    assert ended.at - opening >= STALL, "dropped before the stall timeout"
    server.stdout.wait_for(rf"read nothing for {STALL} s; dropping", timeout=WAIT)
    assert echo(server.port, host, f"/{uid}/after", b"still serving") == b"still serving"


class Gates:
    """A local handler holding each request until the test opens its target's gate."""

    def __init__(self) -> None:
        self._gates: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self._lock = threading.Lock()

    def gate(self, target: str) -> threading.Event:
        with self._lock:
            return self._gates[target]

    def open_all(self) -> None:
        with self._lock:
            for gate in self._gates.values():
                gate.set()

    def __call__(self, incoming: Incoming) -> bool:
        gate = self.gate(incoming.target)
        while not gate.wait(0.1):
            if incoming.stopping.is_set():
                return False
        incoming.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nreleased")
        incoming.wfile.flush()
        return True


@pytest.fixture
def gates() -> Iterator[Gates]:
    held = Gates()
    try:
        yield held
    finally:
        held.open_all()  # no handler thread outlives the test


def test_requests_past_the_stream_cap_get_503_tunnel_busy(
    launcher: Launcher, dev_token: Token, local_server: LocalServer, uid: str, gates: Gates
) -> None:
    """With LUMINET_MAX_STREAMS_PER_TUNNEL=2 and two requests held by the local server, a
    third request (or a WebSocket handshake) gets 503 tunnel-busy with Retry-After at
    once and never reaches the local server; once one is answered, requests pass again."""
    server = launcher.server(LUMINET_MAX_STREAMS_PER_TUNNEL="2")
    client = launcher.client(server, dev_token, local_server.port)
    host = f"{client.wait_active()[2]}.localhost"
    hold = f"/{uid}/hold"
    local_server.stream(hold, gates)
    targets = [f"{hold}?n={i}" for i in range(2)]
    held = [rawclient.RawConnection(server.port, timeout=WAIT) for _ in targets]
    try:
        for conn, target in zip(held, targets, strict=True):
            conn.send(http1.encode_head(f"GET {target} HTTP/1.1", [("Host", host)]))
            local_server.wait_for(lambda r, target=target: r.target == target, timeout=WAIT)

        started = time.monotonic()
        busy = rawclient.request(server.port, "GET", f"/{uid}/busy", host, timeout=WAIT)
        took = time.monotonic() - started
        assert (busy.status, busy.value("Luminet-Error"), busy.value("Retry-After")) == (
            503,
            "tunnel-busy",
            "5",
        )
        assert took < FAST, f"the refusal took {took:.1f} s"
        with pytest.raises(InvalidStatus) as refused:
            connect(server.port, host, f"/{uid}/busy-socket")
        headers = refused.value.response.headers
        assert (refused.value.response.status_code, headers.get("Luminet-Error")) == (
            503,
            "tunnel-busy",
        )
        assert headers.get("Retry-After") == "5"
        assert local_server.requests(lambda r: r.path.startswith(f"/{uid}/busy")) == []

        gates.gate(targets[0]).set()
        assert held[0].read_response().body == b"released"
        # The session frees the stream when the client's last frame reaches it, which
        # may be just after the caller has the whole response.
        deadline = time.monotonic() + WAIT
        while (after := rawclient.request(server.port, "GET", f"/{uid}/after", host)).status != 200:
            assert (after.status, after.value("Luminet-Error")) == (503, "tunnel-busy")
            assert time.monotonic() < deadline, f"still busy {WAIT} s after a stream ended"
        gates.gate(targets[1]).set()
        assert held[1].read_response().body == b"released"
    finally:
        for conn in held:
            conn.close()
