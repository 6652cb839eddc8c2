"""WebSockets to the local server, one per public WebSocket on the tunnel.

Each socket has two threads: one reads messages from the local server and sends
them to the tunnel as fragments (waiting for window credit, which slows the
local server through TCP if the public side reads slowly), the other writes
what comes from the tunnel to the local server and hands credit back. The
windows, fragments and reassembly follow ``client.flow``.

Each socket keeps a ``SocketRecord``: opened when the handshake arrives, then
ended once, when its reader thread ends, by whichever came first: a close from
either side, a refusal or failure of the local server, or an abort.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import websocket

from . import protocol
from .events import Events, Failure, SocketRecord
from .flow import MessageTooBig, Reassembly, ReceiveWindow, SendWindow, split_chunks
from .local import LocalAddress, describe, unreachable
from .protocol import CloseCode, ProtocolError

logger = logging.getLogger(__name__)

#: Seconds the local server has to complete the opening handshake.
HANDSHAKE_TIMEOUT = 10.0

#: Seconds the socket's reader waits for its writer thread to end.
WRITER_JOIN_TIMEOUT = 5.0

Send = Callable[[Any], None]


@dataclass(frozen=True)
class _Closed:
    code: int | None
    by: Literal["public", "local"]


@dataclass(frozen=True)
class _Failed:
    failure: Failure
    reason: str = ""


class LocalSocket:
    """The local side of one public WebSocket, with its record from open to end."""

    def __init__(
        self, opening: protocol.WsOpen, address: LocalAddress, send: Send, events: Events
    ) -> None:
        self.id = opening.stream
        self.record = SocketRecord.from_opening(opening)
        self._opening = opening
        self._address = address
        self._url = f"ws://{address.authority}{opening.path}"
        self._send = send
        self._events = events
        #: How the socket ended, first come first kept; reported when its thread ends.
        self._ending: _Closed | _Failed | None = None
        self._incoming: queue.Queue[protocol.WsFrame | protocol.WsClose | None] = queue.Queue()
        # client.flow's window rules under one Condition, which also wakes the
        # reader waiting for credit when the socket is stopped.
        self._flow = threading.Condition(threading.Lock())
        self._inbound = ReceiveWindow(batch=1)  # fragments from the tunnel: credit each one
        self._outbound = SendWindow()  # fragments to the tunnel
        self._stopped = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self.on_done: Callable[[int], None] = lambda stream_id: None

    def start(self) -> None:
        self._events.websocket_opened(self.record)
        threading.Thread(target=self._run, name=f"ws-{self.id}", daemon=True).start()

    # -- from the tunnel (reader thread of the tunnel) -------------------------

    def frame(self, message: protocol.WsFrame) -> None:
        with self._flow:
            try:
                self._inbound.received()
            except ProtocolError as exc:
                raise ProtocolError(f"stream {self.id}: {exc}") from exc
        self._incoming.put(message)

    def close_from_public(self, message: protocol.WsClose) -> None:
        self._incoming.put(message)

    def credit(self, chunks: int) -> None:
        with self._flow:
            self._outbound.granted(chunks)
            self._flow.notify()

    def abort(self, failure: Failure, reason: str = "") -> None:
        """Drop the local connection now: the public side (``CANCELLED``, or the server
        giving up, saying ``reason``) or the tunnel is gone."""
        self._end(_Failed(failure, reason))
        self._shutdown()

    def _shutdown(self) -> None:
        self._stop()
        self._incoming.put(None)
        ws = self._ws
        if ws is not None and ws.sock is not None:
            # Not ws.abort(): it does nothing once a close frame has been sent, and
            # the socket would linger in CLOSE-WAIT. shutdown() also wakes the reader.
            with contextlib.suppress(OSError):
                ws.sock.shutdown(socket.SHUT_RDWR)

    def _stop(self) -> None:
        """Mark the socket stopped and wake the reader if it waits for credit."""
        with self._flow:
            self._stopped.set()
            self._flow.notify_all()

    def _end(self, ending: _Closed | _Failed) -> None:
        with self._flow:
            if self._ending is None:
                self._ending = ending

    # -- the local side (own threads) ------------------------------------------

    def _run(self) -> None:
        writer: threading.Thread | None = None
        try:
            ws = self._connect()
            if ws is None:
                return
            writer = threading.Thread(target=self._write_loop, name=f"ws-{self.id}-w", daemon=True)
            writer.start()
            self._read_loop(ws)
        except Exception:
            logger.exception("bug in WebSocket stream %d", self.id)
            self._end(_Failed(Failure.CLIENT_ERROR))
        finally:
            try:
                self._shutdown()
                if writer is not None:
                    writer.join(WRITER_JOIN_TIMEOUT)  # its byte counts belong in the record
                if self._ws is not None:
                    self._ws.shutdown()  # closes the file descriptor
                self.on_done(self.id)
            finally:
                self._report_end()

    def _report_end(self) -> None:
        match self._ending:
            case _Closed(code=code, by=by):
                self._events.websocket_closed(self.record, code, by)
            case _Failed(failure=failure, reason=reason):
                self._events.websocket_failed(self.record, failure, reason)
            case None:  # every way out sets an ending; a bug if not
                self._events.websocket_failed(self.record, Failure.CLIENT_ERROR)

    def _connect(self) -> websocket.WebSocket | None:
        opening = self._opening
        shown = self._address.headers(list(opening.headers))
        host = protocol.header_values(shown, "host")
        origin = protocol.header_values(shown, "origin")
        skip = {"host", "origin"}
        headers = [f"{n}: {v}" for n, v in shown if n.lower() not in skip]
        options: dict[str, Any] = {"suppress_origin": not origin}
        if origin:
            options["origin"] = origin[0]
        if host:
            options["host"] = host[0]
        try:
            sock = self._address.connect(HANDSHAKE_TIMEOUT)
        except OSError as exc:
            message = describe(exc, self._address.authority)
            self._end(_Failed(Failure.LOCAL_ERROR, message))
            refused = unreachable(exc)
            self._send(protocol.StreamError(stream=self.id, message=message, refused=refused))
            return None
        try:
            ws = websocket.create_connection(
                self._url,
                socket=sock,
                header=headers,
                subprotocols=opening.subprotocols or None,
                timeout=HANDSHAKE_TIMEOUT,
                enable_multithread=True,
                skip_utf8_validation=True,
                **options,
            )
        except websocket.WebSocketBadStatusException as exc:
            # A refusal is a final answer that is not a success (the protocol takes
            # 300-599); anything else from the local server is a failed handshake.
            status = exc.status_code if 300 <= exc.status_code <= 599 else 502
            self._end(_Failed(Failure.REFUSED, f"local server refused with {exc.status_code}"))
            refusal = _refusal_headers(exc.resp_headers)
            self._send(protocol.WsReject(stream=self.id, status=status, headers=refusal))
            return None
        except (OSError, websocket.WebSocketException) as exc:
            message = f"local WebSocket failed: {exc or exc.__class__.__name__}"[:300]
            self._end(_Failed(Failure.LOCAL_ERROR, message))
            self._send(protocol.StreamError(stream=self.id, message=message))
            return None
        ws.settimeout(None)
        self._ws = ws
        if self._stopped.is_set():  # cancelled while connecting
            ws.abort()
            return None
        subprotocol = ws.getsubprotocol()
        self._send(protocol.WsAccept(stream=self.id, subprotocol=subprotocol))
        self._events.websocket_accepted(self.record, subprotocol)
        return ws

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        while not self._stopped.is_set():
            try:
                opcode, data = ws.recv_data()
            except (OSError, websocket.WebSocketException):
                if not self._stopped.is_set():
                    self._end(_Closed(CloseCode.ABNORMAL, "local"))
                    self._send(protocol.WsClose(stream=self.id, code=CloseCode.ABNORMAL))
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                logger.debug("stream %d: local side closed", self.id)
                if not self._stopped.is_set():
                    close = _close_message(self.id, data)
                    self._end(_Closed(close.code, "local"))
                    self._send(close)
                return
            text = opcode == websocket.ABNF.OPCODE_TEXT
            pieces = split_chunks(data)
            for index, piece in enumerate(pieces):
                if not self._wait_credit():
                    return
                fin = index == len(pieces) - 1
                self._send(protocol.WsFrame(self.id, piece, text=text, fin=fin))
            record = self.record
            record.bytes_out += len(data)
            record.messages_out += 1
            if self._events.tapping:
                self._events.websocket_message(record, data, text, from_public=False)

    def _wait_credit(self) -> bool:
        """Wait until one more fragment may go and count it as sent; False once stopped."""
        with self._flow:
            while not self._outbound.open and not self._stopped.is_set():
                self._flow.wait()
            if self._stopped.is_set():
                return False
            self._outbound.sent()
            return True

    def _write_loop(self) -> None:
        message = Reassembly()
        while True:
            item = self._incoming.get()
            if item is None or self._stopped.is_set():
                return
            ws = self._ws
            assert ws is not None
            try:
                if isinstance(item, protocol.WsClose):
                    logger.debug("stream %d: public side closed (%s)", self.id, item.code)
                    self._end(_Closed(item.code, "public"))
                    self._stop()  # the reader must not report the close reply
                    _send_close(ws, item)
                    return
                try:
                    whole = message.add(item.payload, item.fin)
                except MessageTooBig:
                    _send_close(
                        ws, protocol.WsClose(self.id, CloseCode.MESSAGE_TOO_BIG, "message too big")
                    )
                    return
                if whole is not None:
                    opcode = (
                        websocket.ABNF.OPCODE_TEXT if item.text else websocket.ABNF.OPCODE_BINARY
                    )
                    ws.send(whole, opcode)
                    self._delivered(whole, item.text)
            except (OSError, websocket.WebSocketException):
                return
            with self._flow:
                credit = self._inbound.consumed()
            self._send(protocol.Window(stream=self.id, chunks=credit))

    def _delivered(self, message: bytes, text: bool) -> None:
        record = self.record
        record.bytes_in += len(message)
        record.messages_in += 1
        if self._events.tapping:
            self._events.websocket_message(record, message, text, from_public=True)


def _refusal_headers(received: Any) -> protocol.Headers:
    """The refusal's end-to-end headers (a WWW-Authenticate, a Location) to pass on;
    none if any would not travel on the tunnel."""
    pairs = [(str(name), str(value)) for name, value in (received or {}).items()]
    try:
        return protocol.end_to_end(protocol.validate_headers(pairs))
    except ProtocolError:
        return []


def _close_message(stream: int, payload: bytes) -> protocol.WsClose:
    if len(payload) < 2:
        return protocol.WsClose(stream=stream)
    code, reason = protocol.close_fields(
        int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")
    )
    return protocol.WsClose(stream=stream, code=code, reason=reason)


def _send_close(ws: websocket.WebSocket, message: protocol.WsClose) -> None:
    # RFC 6455 section 7.4.1: 1005 means "no code", 1006 "no closing handshake".
    if message.code in (CloseCode.ABNORMAL, CloseCode.TLS_HANDSHAKE):
        if ws.sock is not None:
            ws.sock.shutdown(socket.SHUT_RDWR)
    elif message.code is None or message.code == CloseCode.NO_STATUS:
        ws.send(b"", websocket.ABNF.OPCODE_CLOSE)
    else:
        ws.send_close(message.code, message.reason.encode("utf-8"))
