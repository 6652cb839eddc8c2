"""The client's tunnel: one WebSocket to the server, many streams to the local server.

A reader thread owns the socket's receiving side and hands each stream to a
bounded pool of worker threads; workers send on the socket under a lock. Flow
control mirrors the server's: a worker sends at most ``WINDOW_CHUNKS`` response
chunks ahead of the server's ``window`` credit, and acknowledges each request
chunk once the local server has taken it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO, assert_never

import websocket

from . import protocol
from .config import Config
from .flow import ReceiveWindow, SendWindow
from .forward import ConnectionPool, Exchange, LocalError
from .frames import MaskedFrame
from .protocol import ProtocolError
from .sockets import LocalSocket

logger = logging.getLogger(__name__)

#: Seconds between our pings; a connection silent for PING_TIMEOUT is dead.
PING_INTERVAL = 20.0
PING_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


class TunnelError(Exception):
    """The tunnel cannot continue; the CLI prints the message and exits non-zero."""


class AuthFailed(TunnelError):
    pass


class ConnectionLost(Exception):
    """The WebSocket broke; the client reconnects."""


class _StreamCancelled(Exception):
    pass


class ClientStream:
    """One request's state, shared by the reader thread and its worker.

    The window rules are ``client.flow``'s; this class only guards them with one
    Condition, which also wakes a worker waiting for credit when the stream ends.
    """

    def __init__(self, request: protocol.Request) -> None:
        self.request = request
        self.id = request.stream
        self.body: queue.Queue[tuple[bytes, bool] | None] = queue.Queue()
        self.body_done = False  # the last request chunk has reached the local server
        self.cancelled = threading.Event()
        self.exchange: Exchange | None = None
        self._flow = threading.Condition(threading.Lock())
        self._receive = ReceiveWindow()  # request chunks from the server
        self._send = SendWindow()  # response chunks to the server

    def cancel(self) -> None:
        with self._flow:
            self.cancelled.set()
            self._flow.notify_all()
        self.body.put(None)
        exchange = self.exchange
        if exchange is not None:
            exchange.abort()

    def request_chunks(self) -> Iterator[bytes]:
        while True:
            item = self.body.get()
            if item is None or self.cancelled.is_set():
                raise _StreamCancelled
            chunk, end = item
            self.body_done = end
            yield chunk
            if end:
                return

    def chunk_received(self, chunk: bytes, end: bool) -> None:
        """Queue a request chunk from the server, holding it to the window."""
        with self._flow:
            try:
                self._receive.received()
            except ProtocolError as exc:
                raise ProtocolError(f"stream {self.id}: {exc}") from exc
        self.body.put((chunk, end))

    def chunk_sent(self) -> int:
        """Count a chunk as taken by the local server; return the credit to send back.

        Nothing once the body is complete: the server needs no credit for its end.
        """
        with self._flow:
            if self.body_done:
                return 0
            return self._receive.consumed()

    def credit(self, chunks: int) -> None:
        """Take the server's credit for response chunks."""
        with self._flow:
            self._send.granted(chunks)
            self._flow.notify()

    def wait_credit(self) -> None:
        """Wait until one more response chunk may be sent, and count it as sent."""
        with self._flow:
            while not self._send.open and not self.cancelled.is_set():
                self._flow.wait()
            if self.cancelled.is_set():
                raise _StreamCancelled
            self._send.sent()


class Tunnel:
    """One connected, authenticated WebSocket and the streams running on it."""

    def __init__(self, ws: websocket.WebSocket, config: Config, out: TextIO) -> None:
        self._ws = ws
        self._config = config
        self._out = out
        self._send_lock = threading.Lock()
        self._print_lock = threading.Lock()
        self._streams: dict[int, ClientStream] = {}
        self._sockets: dict[int, LocalSocket] = {}
        self._streams_lock = threading.Lock()
        self._pool = ConnectionPool(config.local_host, config.local_port, config.max_concurrency)
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

    # -- receiving -----------------------------------------------------------

    def run(self) -> None:
        """Serve streams until the connection is lost (ConnectionLost) or refused (AuthFailed)."""
        pinger = threading.Thread(target=self._ping_loop, name="ping", daemon=True)
        pinger.start()
        try:
            while True:
                try:
                    opcode, payload = self._ws.recv_data()
                except (OSError, websocket.WebSocketException) as exc:
                    raise ConnectionLost(str(exc) or exc.__class__.__name__) from exc
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    _closed_by_server(payload)
                try:
                    if opcode == websocket.ABNF.OPCODE_BINARY:
                        self._received_data(protocol.decode_data(payload))
                    else:
                        self._received_control(protocol.decode(payload))
                except ProtocolError as exc:
                    logger.warning("protocol error from server: %s", exc)
                    raise ConnectionLost(f"protocol error: {exc}") from exc
        finally:
            self._closed.set()
            with self._streams_lock:
                streams = list(self._streams.values())
                sockets = list(self._sockets.values())
                self._streams.clear()
                self._sockets.clear()
            for stream in streams:
                stream.cancel()
            for socket in sockets:
                socket.abort()
            self._workers.shutdown(wait=False, cancel_futures=True)
            self._pool.close()
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self._ws.close(timeout=1)

    def _ping_loop(self) -> None:
        while not self._closed.wait(PING_INTERVAL):
            try:
                with self._send_lock:
                    self._ws.ping()
            except (OSError, websocket.WebSocketException):
                return

    def _received_control(self, message: protocol.ControlMessage) -> None:
        match message:
            case protocol.Request():
                stream = ClientStream(message)
                with self._streams_lock:
                    if message.stream in self._streams:
                        raise ProtocolError(f"stream {message.stream} opened twice")
                    self._streams[message.stream] = stream
                self._workers.submit(self._serve, stream)
            case protocol.WsOpen():
                socket = LocalSocket(
                    message, self._config.local_host, self._config.local_port, self._send_any
                )
                socket.on_done = self._socket_done
                with self._streams_lock:
                    if message.stream in self._streams or message.stream in self._sockets:
                        raise ProtocolError(f"stream {message.stream} opened twice")
                    self._sockets[message.stream] = socket
                socket.start()
                self._log_line(f"{'WS':<7} {message.path}  open")
            case protocol.Window(stream=stream_id, chunks=chunks):
                if (waiting := self._stream(stream_id)) is not None:
                    waiting.credit(chunks)
                elif (local := self._socket(stream_id)) is not None:
                    local.credit(chunks)
            case protocol.Cancel(stream=stream_id):
                if (cancelled := self._stream(stream_id)) is not None:
                    cancelled.cancel()
                elif (local := self._socket(stream_id)) is not None:
                    local.abort()
            case protocol.WsClose(stream=stream_id):
                if (local := self._socket(stream_id)) is not None:
                    local.close_from_public(message)
            case protocol.AuthError(message=text):
                raise AuthFailed(text)
            case (
                protocol.Auth()
                | protocol.AuthOk()
                | protocol.Response()
                | protocol.StreamError()
                | protocol.WsAccept()
                | protocol.WsReject()
            ):
                raise ProtocolError(f"unexpected {type(message).__name__} from the server")
            case _:
                assert_never(message)

    def _received_data(self, message: protocol.BinaryMessage) -> None:
        if isinstance(message, protocol.WsFrame):
            if (socket := self._socket(message.stream)) is not None:
                socket.frame(message)
            return
        stream = self._stream(message.stream)
        if stream is None:
            return  # finished or cancelled meanwhile
        stream.chunk_received(message.payload, message.end)

    def _stream(self, stream_id: int) -> ClientStream | None:
        with self._streams_lock:
            return self._streams.get(stream_id)

    def _socket(self, stream_id: int) -> LocalSocket | None:
        with self._streams_lock:
            return self._sockets.get(stream_id)

    def _socket_done(self, stream_id: int) -> None:
        with self._streams_lock:
            socket = self._sockets.pop(stream_id, None)
        if socket is not None:
            self._log_line(f"{'WS':<7} stream {stream_id}  closed")

    def _send_any(self, message: protocol.Message) -> None:
        """Send from a socket thread; a lost tunnel ends that socket, not the thread."""
        with contextlib.suppress(ConnectionLost):
            if isinstance(message, (protocol.Data, protocol.WsFrame)):
                self.send_data(message)
            else:
                self.send(message)

    # -- one stream, on a worker thread ----------------------------------------

    def _serve(self, stream: ClientStream) -> None:
        started = time.monotonic()
        status: int | str = "-"
        exchange = Exchange(self._pool, stream.request)
        stream.exchange = exchange
        try:
            exchange.send_request(stream.request_chunks(), lambda: self._ack(stream))
            response = exchange.receive_response()
            status = response.status
            self.send(
                protocol.Response(
                    stream=stream.id,
                    status=response.status,
                    headers=protocol.validate_headers(response.headers),
                    body=response.body,
                    # The server may then pass head and first chunk on together.
                    data_follows=response.body and exchange.body_waiting(),
                )
            )
            if response.body:
                for chunk, last in exchange.body_chunks():
                    stream.wait_credit()
                    self.send_data(protocol.Data(stream.id, chunk, end=last))
        except _StreamCancelled:
            status = "cancelled"
        except (LocalError, ProtocolError) as exc:
            if not stream.cancelled.is_set():
                status = 502 if status == "-" else f"{status} aborted"
                self._send_quietly(protocol.StreamError(stream=stream.id, message=str(exc)))
        except ConnectionLost:
            status = "tunnel lost"
        except Exception:
            logger.exception("bug while serving stream %d", stream.id)
            self._send_quietly(protocol.StreamError(stream=stream.id, message="client error"))
        finally:
            if stream.cancelled.is_set():
                exchange.abort()
            exchange.finish()
            with self._streams_lock:
                self._streams.pop(stream.id, None)
            self._log(stream.request, status, time.monotonic() - started)

    def _ack(self, stream: ClientStream) -> None:
        credit = stream.chunk_sent()
        if credit:
            self.send(protocol.Window(stream=stream.id, chunks=credit))

    def _send_quietly(self, message: protocol.ControlMessage) -> None:
        with contextlib.suppress(ConnectionLost):
            self.send(message)

    def _log(self, request: protocol.Request, status: int | str, seconds: float) -> None:
        self._log_line(f"{request.method:<7} {request.path}  {status}  {seconds * 1000:.0f} ms")

    def _log_line(self, line: str) -> None:
        with self._print_lock:
            print(line, file=self._out, flush=True)


def _closed_by_server(payload: bytes) -> None:
    """Raise what a close frame from the server means for the client."""
    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
    reason = payload[2:].decode("utf-8", "replace")
    if code == protocol.CLOSE_REPLACED:
        raise TunnelError("another connection with the same token took this tunnel over")
    if code == protocol.CLOSE_AUTH_FAILED:
        raise AuthFailed(reason or "invalid token")
    raise ConnectionLost(f"server closed the tunnel ({code} {reason})".replace(" )", ")"))


def authenticate(ws: websocket.WebSocket, token: str, subdomain: str | None) -> protocol.AuthOk:
    ws.send(protocol.encode(protocol.Auth(token=token, subdomain=subdomain)))
    try:
        reply = protocol.decode(ws.recv())
    except ProtocolError as exc:
        raise ConnectionLost(f"server sent an invalid reply: {exc}") from exc
    match reply:
        case protocol.AuthOk():
            return reply
        case protocol.AuthError(message=text):
            raise AuthFailed(text)
        case _:
            raise ConnectionLost(f"server sent {type(reply).__name__} instead of auth_ok")


def run(config: Config, out: TextIO = sys.stdout, max_attempts: int | None = None) -> None:
    """Keep a tunnel up until interrupted; raise TunnelError if it cannot be."""
    subdomain: str | None = None
    failures = 0
    while max_attempts is None or failures < max_attempts:
        try:
            ws = websocket.create_connection(
                config.server,
                timeout=CONNECT_TIMEOUT,
                enable_multithread=True,
                skip_utf8_validation=True,
            )
        except (OSError, websocket.WebSocketException) as exc:
            reason = f"cannot reach {config.server}: {exc or exc.__class__.__name__}"
        else:
            try:
                ok = authenticate(ws, config.token, subdomain)
                ws.settimeout(PING_TIMEOUT)
                if subdomain is not None and ok.subdomain != subdomain:
                    print(f"Previous subdomain {subdomain} was taken.", file=out, flush=True)
                subdomain = ok.subdomain
                failures = 0
                print(f"Tunnel active: {ok.url}", file=out, flush=True)
                print(f"→ forwarding to {config.local_origin}", file=out, flush=True)
                Tunnel(ws, config, out).run()
                reason = "connection lost"
            except ConnectionLost as exc:
                reason = str(exc) or "connection lost"
            except (OSError, websocket.WebSocketException) as exc:
                reason = str(exc) or exc.__class__.__name__
            finally:
                ws.close()
        failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1)) * random.uniform(0.5, 1.5)
        print(f"Tunnel down ({reason}); reconnecting in {delay:.1f} s", file=out, flush=True)
        time.sleep(delay)
    raise TunnelError("gave up reconnecting")
