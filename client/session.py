"""One connected tunnel: one WebSocket to the server, many streams to the local server.

``Tunnel`` owns one connected WebSocket: a reader thread receives and dispatches
the server's messages, and anyone may send under a lock. HTTP streams run on a
bounded pool of worker threads (``client.exchanges``), WebSockets on threads of
their own (``client.sockets``); what happens is reported to ``Events``, whose
observers print it (``client.console``). ``client.keeper`` keeps a tunnel up,
reconnecting with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import assert_never

import websocket

from . import protocol, tlssocket
from .config import Config
from .errors import AuthFailed, ConnectionLost, ConnectionMoved, TunnelError
from .events import Events, Failure
from .exchanges import ExchangeRunner, HttpStream
from .forward import ConnectionPool, Exchange
from .frames import MaskedFrame
from .local import LocalAddress
from .protocol import ProtocolError, StreamRefused
from .sockets import LocalSocket

logger = logging.getLogger(__name__)

#: Seconds between our pings; a connection silent for PING_TIMEOUT is dead.
PING_INTERVAL = 20.0
PING_TIMEOUT = 60.0

_PING_CLOCK = struct.Struct("!Q")


def ping_payload() -> bytes:
    """A ping carrying when it left, so its pong tells the round trip (pongs echo it)."""
    return _PING_CLOCK.pack(time.monotonic_ns())


def round_trip(pong: bytes) -> float | None:
    """Seconds since the ping that ``pong`` answers left; None if it is not one of ours."""
    if len(pong) != _PING_CLOCK.size:
        return None
    seconds = (time.monotonic_ns() - _PING_CLOCK.unpack(pong)[0]) / 1e9
    return seconds if 0 <= seconds <= PING_TIMEOUT else None


class Tunnel:
    """One connected, authenticated WebSocket and the streams running on it."""

    def __init__(
        self,
        ws: websocket.WebSocket,
        config: Config,
        events: Events,
        local: LocalAddress | None = None,
        on_move: Callable[[], None] | None = None,
    ) -> None:
        # From here on a reader thread and sender threads share the socket.
        tlssocket.share(ws)
        self._ws = ws
        #: Called when the server process says it is stopping (``move``).
        self._on_move = on_move
        self._config = config
        self._events = events
        self._send_lock = threading.Lock()
        self._streams: dict[int, HttpStream] = {}
        self._sockets: dict[int, LocalSocket] = {}
        self._streams_lock = threading.Lock()
        self._local = local or LocalAddress(
            config.local_host, config.local_port, config.host_header
        )
        self._pool = ConnectionPool(self._local, config.max_concurrency)
        self._runner = ExchangeRunner(self, lambda request: Exchange(self._pool, request), events)
        self._workers = ThreadPoolExecutor(
            max_workers=config.max_concurrency, thread_name_prefix="stream"
        )
        self._closed = threading.Event()

    # -- sending -------------------------------------------------------------

    def send(self, message: protocol.ControlMessage) -> None:
        self._send_frame(protocol.encode(message).encode(), websocket.ABNF.OPCODE_TEXT)

    def send_data(self, message: protocol.BinaryMessage) -> None:
        self._send_frame(protocol.encode_data(message), websocket.ABNF.OPCODE_BINARY)

    def _send_frame(self, payload: bytes, opcode: int) -> None:
        try:
            with self._send_lock:
                self._ws.send_frame(MaskedFrame(opcode, payload))
        except (OSError, websocket.WebSocketException) as exc:
            self._closed.set()
            raise ConnectionLost(str(exc)) from exc

    def _send_any(self, message: protocol.Message) -> None:
        """Send from a socket thread; a lost tunnel ends that socket, not the thread."""
        with contextlib.suppress(ConnectionLost):
            if isinstance(message, (protocol.Data, protocol.WsFrame)):
                self.send_data(message)
            else:
                self.send(message)

    # -- receiving -----------------------------------------------------------

    def run(self) -> None:
        """Serve streams until the connection is lost (ConnectionLost) or refused (AuthFailed)."""
        pinger = threading.Thread(target=self._ping_loop, name="ping", daemon=True)
        pinger.start()
        try:
            while True:
                try:
                    opcode, payload = self._ws.recv_data(control_frame=True)
                except (OSError, websocket.WebSocketException) as exc:
                    raise ConnectionLost(str(exc) or exc.__class__.__name__) from exc
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    _closed_by_server(payload)
                if opcode == websocket.ABNF.OPCODE_PONG:
                    if (seconds := round_trip(payload)) is not None:
                        self._events.latency(seconds)
                    continue
                if opcode == websocket.ABNF.OPCODE_PING:
                    continue  # websocket-client has answered it
                try:
                    if opcode == websocket.ABNF.OPCODE_BINARY:
                        self._received_data(protocol.decode_data(payload))
                    else:
                        self._received_control(protocol.decode_from_server(payload))
                except StreamRefused as exc:
                    # A bad message for one stream fails that stream, not the tunnel.
                    logger.warning("stream %d refused: %s", exc.stream, exc)
                    self._refuse_stream(exc.stream, str(exc))
                except ProtocolError as exc:
                    logger.warning("protocol error from server: %s", exc)
                    raise ConnectionLost(f"protocol error: {exc}") from exc
        finally:
            self._tear_down()

    def close(self) -> None:
        """From another thread: say goodbye to the server and end ``run()``."""
        with contextlib.suppress(ConnectionLost):
            self._send_frame(
                protocol.CloseCode.NORMAL.to_bytes(2, "big"), websocket.ABNF.OPCODE_CLOSE
            )
        sock = self._ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader in recv_data()

    def _tear_down(self) -> None:
        """End every stream and socket: the tunnel is gone."""
        self._closed.set()
        with self._streams_lock:
            streams = list(self._streams.values())
            sockets = list(self._sockets.values())
            self._streams.clear()
            self._sockets.clear()
        for stream in streams:
            stream.cancel(Failure.TUNNEL_LOST)
        for local_socket in sockets:
            local_socket.abort(Failure.TUNNEL_LOST)
        # Streams still queued for a worker are dropped here; see _open_stream.
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._pool.close()
        close_socket(self._ws)

    def _ping_loop(self) -> None:
        while not self._closed.wait(PING_INTERVAL):
            try:
                with self._send_lock:
                    self._ws.ping(ping_payload())
            except (OSError, websocket.WebSocketException):
                return

    def _received_control(self, message: protocol.FromServer) -> None:
        match message:
            case protocol.Request():
                self._open_stream(HttpStream(message))
            case protocol.WsOpen():
                self._open_socket(message)
            case protocol.Window(stream=stream_id, chunks=chunks):
                if (waiting := self._stream(stream_id)) is not None:
                    waiting.credit(chunks)
                elif (local := self._socket(stream_id)) is not None:
                    local.credit(chunks)
            case protocol.Cancel(stream=stream_id, reason=reason):
                if (cancelled := self._stream(stream_id)) is not None:
                    cancelled.cancel(Failure.CANCELLED, reason)
                elif (local := self._socket(stream_id)) is not None:
                    local.abort(Failure.CANCELLED, reason)
            case protocol.WsClose(stream=stream_id):
                if (local := self._socket(stream_id)) is not None:
                    local.close_from_public(message)
            case protocol.Refused(method=method, path=path, status=status, rule=rule):
                self._events.refused_at_edge(method, path, status, rule)
            case protocol.AuthError(message=text):
                raise AuthFailed(text)
            case protocol.AuthOk():
                raise ProtocolError("auth_ok after authentication")
            case protocol.Move():
                logger.info("the server process is stopping: moving this connection")
                if self._on_move is not None:
                    self._on_move()
            case _:
                assert_never(message)

    def _received_data(self, message: protocol.BinaryMessage) -> None:
        if isinstance(message, protocol.WsFrame):
            if (local := self._socket(message.stream)) is not None:
                local.frame(message)
            return
        stream = self._stream(message.stream)
        if stream is None:
            return  # finished or cancelled meanwhile
        stream.chunk_received(message.payload, message.end)

    def _open_stream(self, stream: HttpStream) -> None:
        with self._streams_lock:
            if stream.id in self._streams or stream.id in self._sockets:
                raise ProtocolError(f"stream {stream.id} opened twice")
            self._streams[stream.id] = stream
        self._events.exchange_started(stream.record)
        future = self._workers.submit(self._serve, stream)
        future.add_done_callback(lambda done: self._dropped(done, stream))

    def _serve(self, stream: HttpStream) -> None:
        try:
            self._runner.serve(stream)
        finally:
            with self._streams_lock:
                self._streams.pop(stream.id, None)

    def _dropped(self, future: Future[None], stream: HttpStream) -> None:
        if future.cancelled():  # the tunnel went away before a worker took the stream
            self._runner.never_ran(stream)

    def _open_socket(self, opening: protocol.WsOpen) -> None:
        local = LocalSocket(opening, self._local, self._send_any, self._events)
        local.on_done = self._socket_done
        with self._streams_lock:
            if opening.stream in self._streams or opening.stream in self._sockets:
                raise ProtocolError(f"stream {opening.stream} opened twice")
            self._sockets[opening.stream] = local
        local.start()

    def _socket_done(self, stream_id: int) -> None:
        with self._streams_lock:
            self._sockets.pop(stream_id, None)

    def _refuse_stream(self, stream_id: int, reason: str) -> None:
        """End one stream whose message from the server the protocol refuses."""
        if (stream := self._stream(stream_id)) is not None:
            stream.cancel(Failure.CLIENT_ERROR)
        elif (local := self._socket(stream_id)) is not None:
            local.abort(Failure.CLIENT_ERROR)
        else:
            return
        self._send_any(protocol.StreamError(stream=stream_id, message=reason[:300]))

    def _stream(self, stream_id: int) -> HttpStream | None:
        with self._streams_lock:
            return self._streams.get(stream_id)

    def _socket(self, stream_id: int) -> LocalSocket | None:
        with self._streams_lock:
            return self._sockets.get(stream_id)


def close_socket(ws: websocket.WebSocket) -> None:
    """End the closing handshake if it is still open, and close the socket in any case.

    Once a close frame has come in (websocket-client answers it at once),
    ``close()`` returns without closing the socket, which then stays open until
    the garbage collector finds it: one descriptor per tunnel the server closed
    (the soak of issue 8 saw them pile up).
    """
    with contextlib.suppress(OSError, websocket.WebSocketException):
        ws.close(timeout=1)
    ws.shutdown()


def _closed_by_server(payload: bytes) -> None:
    """Raise what a close frame from the server means for the client."""
    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
    reason = payload[2:].decode("utf-8", "replace")
    if code == protocol.CloseCode.MOVED:
        raise ConnectionMoved("moved to a newer connection")
    if code == protocol.CloseCode.REPLACED:
        raise TunnelError("another connection with the same token took this tunnel over")
    if code == protocol.CloseCode.DISCONNECTED:
        # The operator meant it: reconnecting would undo their decision.
        raise TunnelError("disconnected by the server's operator")
    if code == protocol.CloseCode.AUTH_FAILED:
        raise AuthFailed(reason or "invalid token")
    raise ConnectionLost(f"server closed the tunnel ({code} {reason})".replace(" )", ")"))
