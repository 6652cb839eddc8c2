"""The server's end of one client's tunnel WebSocket.

Turns wire messages from the client into channel-layer messages for the waiting
views (see ``relay``), and channel-layer messages from views into wire messages.
The consumer that owns the socket only feeds this class; all policy lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import assert_never

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

from client import protocol
from client.flow import split_chunks
from client.protocol import ProtocolError
from tokens.auth import authenticate, is_still_valid

from .hosts import public_url
from .outbox import Outbox
from .payloads import get_payloads
from .registry import RegistryError, claim_subdomain, get_registry
from .relay import coalesce

logger = logging.getLogger(__name__)


#: Seconds a closing tunnel spends sending the views what is still queued for them.
OUTBOX_FLUSH_TIMEOUT = 2.0


class SessionClosed(Exception):
    """The session ended; ``code`` and ``reason`` go into the WebSocket close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class _StreamState:
    reply: str
    websocket: bool = False
    # DATA frames the client may still send us for this stream's response body.
    response_credit: int = protocol.WINDOW_CHUNKS
    # Request DATA frames sent to the client and not yet acknowledged.
    request_unacked: int = 0
    # A response head held for the DATA frame the client said follows it.
    held_head: dict | None = None


SendText = Callable[[str], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]


class TunnelSession:
    def __init__(self, channel: str, peer: str, send_text: SendText, send_bytes: SendBytes):
        self.channel = channel
        self.peer = peer
        self._send_text = send_text
        self._send_bytes = send_bytes
        self._layer = get_channel_layer()
        self._payloads = get_payloads()
        self._outbox = Outbox(self._layer, coalesce, self._view_lost, self._payloads.store)
        self._registry = get_registry()
        self.token_id: int | None = None
        self.token_label = ""
        self.subdomain: str | None = None
        self._streams: dict[int, _StreamState] = {}
        self._by_reply: dict[str, int] = {}
        self._next_stream = 1
        self._started = time.monotonic()
        self._requests = 0
        self._bytes_in = 0
        self._bytes_out = 0
        self._ended = False

    # -- wire messages from the client -------------------------------------

    async def received(self, text: str | None, data: bytes | None) -> None:
        """Handle one WebSocket message; raise SessionClosed to end the session."""
        try:
            if data is not None:
                await self._received_data(protocol.decode_data(data))
            elif text is not None:
                await self._received_control(protocol.decode(text))
        except ProtocolError as exc:
            logger.warning("tunnel %s: protocol error from %s: %s", self.subdomain, self.peer, exc)
            raise SessionClosed(protocol.CLOSE_PROTOCOL_ERROR, str(exc)[:120]) from exc

    async def _received_control(self, message: protocol.ControlMessage) -> None:
        if self.subdomain is None:
            if not isinstance(message, protocol.Auth):
                raise ProtocolError("the first message must be auth")
            await self._authenticate(message)
            return
        match message:
            case protocol.Response(stream=stream_id):
                stream = self._stream(stream_id, websocket=False)
                if stream is None:
                    return  # cancelled by the public side meanwhile
                if not message.body:
                    self._forget(stream_id)
                head = {
                    "type": "stream.response",
                    "status": message.status,
                    "headers": [list(pair) for pair in message.headers],
                    "body": message.body,
                }
                if message.data_follows:
                    stream.held_head = head  # one channel-layer message for both
                else:
                    self._to_view(stream.reply, head)
            case protocol.Window(stream=stream_id, chunks=chunks):
                stream = self._streams.get(stream_id)
                if stream is None:
                    return
                chunks = min(chunks, stream.request_unacked)
                if chunks:
                    stream.request_unacked -= chunks
                    self._to_view(stream.reply, {"type": "stream.window", "chunks": chunks})
            case protocol.StreamError(stream=stream_id):
                stream = self._streams.get(stream_id)
                if stream is not None:
                    self._forget(stream_id)
                    if stream.held_head is not None:
                        self._to_view(stream.reply, stream.held_head)
                    self._to_view(
                        stream.reply, {"type": "stream.error", "message": message.message}
                    )
            case protocol.WsAccept(stream=stream_id):
                stream = self._stream(stream_id, websocket=True)
                if stream is not None:
                    self._to_view(
                        stream.reply,
                        {"type": "stream.ws_accept", "subprotocol": message.subprotocol},
                    )
            case protocol.WsReject(stream=stream_id):
                stream = self._stream(stream_id, websocket=True)
                if stream is not None:
                    self._forget(stream_id)
                    self._to_view(
                        stream.reply,
                        {
                            "type": "stream.ws_reject",
                            "status": message.status,
                            "headers": [list(pair) for pair in message.headers],
                        },
                    )
            case protocol.WsClose(stream=stream_id):
                stream = self._stream(stream_id, websocket=True)
                if stream is not None:
                    self._forget(stream_id)
                    self._to_view(
                        stream.reply,
                        {"type": "stream.ws_close", "code": message.code, "reason": message.reason},
                    )
            case protocol.Auth():
                raise ProtocolError("already authenticated")
            case (
                protocol.AuthOk()
                | protocol.AuthError()
                | protocol.Request()
                | protocol.Cancel()
                | protocol.WsOpen()
            ):
                raise ProtocolError(f"{type(message).__name__} is sent by the server only")
            case _:
                assert_never(message)

    async def _received_data(self, message: protocol.BinaryMessage) -> None:
        if self.subdomain is None:
            raise ProtocolError("the first message must be auth")
        stream = self._stream(message.stream, websocket=isinstance(message, protocol.WsFrame))
        if stream is None:
            return  # cancelled meanwhile: its in-flight chunks are expected
        if stream.response_credit <= 0:
            raise ProtocolError(f"stream {message.stream} sent beyond its window")
        stream.response_credit -= 1
        self._bytes_out += len(message.payload)
        match message:
            case protocol.Data(end=end):
                if end:
                    self._forget(message.stream)
                event = {"type": "stream.data", "data": message.payload, "end": end, "chunks": 1}
                if stream.held_head is not None:
                    event = {**stream.held_head, "data": message.payload, "end": end, "chunks": 1}
                    stream.held_head = None
            case protocol.WsFrame(text=text, fin=fin):
                event = {
                    "type": "stream.ws_frame",
                    "data": message.payload,
                    "text": text,
                    "fin": fin,
                }
            case _:
                assert_never(message)
        self._to_view(stream.reply, event)

    async def _authenticate(self, message: protocol.Auth) -> None:
        token = await authenticate(message.token)
        if token is None:
            logger.warning("tunnel auth failed from %s", self.peer)
            await self._send_text(protocol.encode(protocol.AuthError("invalid token")))
            raise SessionClosed(protocol.CLOSE_AUTH_FAILED, "invalid token")
        try:
            subdomain, claim = await claim_subdomain(
                self._registry, token.id, self.channel, message.subdomain
            )
        except RegistryError as exc:
            logger.error("tunnel registry failure for %s: %s", self.peer, exc)
            await self._send_text(protocol.encode(protocol.AuthError("server busy, try again")))
            raise SessionClosed(1013, "try again later") from exc
        self.token_id, self.token_label, self.subdomain = token.id, token.prefix, subdomain
        if claim.replaced is not None:
            # The same token's older connection to this subdomain is stale: close it.
            with contextlib.suppress(ChannelFull):
                await self._layer.send(claim.replaced, {"type": "tunnel.replaced"})
        url = public_url(subdomain)
        await self._send_text(protocol.encode(protocol.AuthOk(subdomain=subdomain, url=url)))
        logger.info("tunnel %s opened by %s (token %s)", subdomain, self.peer, token.prefix)

    # -- channel-layer messages from views ---------------------------------

    async def open_stream(self, event: dict) -> None:
        if self.subdomain is None:
            return
        stream_id = self._new_stream(event["reply"], websocket=False)
        headers = [(name, value) for name, value in event["headers"]]
        request = protocol.Request(
            stream=stream_id,
            method=event["method"],
            path=event["path"],
            headers=headers,
            body=event["body"],
        )
        logger.debug(
            "tunnel %s: stream %d %s %s", self.subdomain, stream_id, request.method, request.path
        )
        await self._send_text(protocol.encode(request))

    async def open_socket(self, event: dict) -> None:
        if self.subdomain is None:
            return
        stream_id = self._new_stream(event["reply"], websocket=True)
        headers = [(name, value) for name, value in event["headers"]]
        message = protocol.WsOpen(
            stream=stream_id,
            path=event["path"],
            headers=headers,
            subprotocols=list(event["subprotocols"]),
        )
        logger.debug("tunnel %s: stream %d WebSocket %s", self.subdomain, stream_id, message.path)
        await self._send_text(protocol.encode(message))

    async def socket_frame(self, event: dict) -> None:
        stream_id = self._by_reply.get(event["reply"])
        if stream_id is None:
            return
        self._streams[stream_id].request_unacked += 1
        self._bytes_in += len(event["data"])
        frame = protocol.WsFrame(
            stream=stream_id, payload=event["data"], text=event["text"], fin=event["fin"]
        )
        await self._send_bytes(protocol.encode_data(frame))

    async def close_socket(self, event: dict) -> None:
        stream_id = self._by_reply.get(event["reply"])
        if stream_id is None:
            return
        self._forget(stream_id)
        message = protocol.WsClose(stream=stream_id, code=event["code"], reason=event["reason"])
        await self._send_text(protocol.encode(message))

    async def stream_data(self, event: dict) -> None:
        stream_id = self._by_reply.get(event["reply"])
        if stream_id is None:
            return
        try:
            event = await self._payloads.fetch(event)
        except Exception as exc:  # PayloadLost, or Redis failing: the body is incomplete
            logger.error("tunnel %s: request body lost: %r", self.subdomain, exc)
            self._forget(stream_id)
            self._to_view(event["reply"], {"type": "stream.error", "message": "request body lost"})
            await self._send_text(protocol.encode(protocol.Cancel(stream=stream_id)))
            return
        data, end = event["data"], event["end"]
        self._bytes_in += len(data)
        # The view may send several chunks' worth in one message (see relay).
        chunks = split_chunks(data)
        self._streams[stream_id].request_unacked += len(chunks)
        for number, chunk in enumerate(chunks, 1):
            frame = protocol.Data(
                stream=stream_id, payload=chunk, end=end and number == len(chunks)
            )
            await self._send_bytes(protocol.encode_data(frame))

    async def stream_window(self, event: dict) -> None:
        stream_id = self._by_reply.get(event["reply"])
        if stream_id is None:
            return
        self._streams[stream_id].response_credit += event["chunks"]
        message = protocol.Window(stream=stream_id, chunks=event["chunks"])
        await self._send_text(protocol.encode(message))

    async def cancel_stream(self, event: dict) -> None:
        stream_id = self._by_reply.get(event["reply"])
        if stream_id is None:
            return
        self._forget(stream_id)
        await self._send_text(protocol.encode(protocol.Cancel(stream=stream_id)))

    # -- lifetime ----------------------------------------------------------

    async def keep_alive(self) -> None:
        """Refresh the registry entry and recheck the token until the tunnel ends."""
        while True:
            await asyncio.sleep(settings.LUMINET_HEARTBEAT_INTERVAL)
            if self._ended:
                return  # released: never claim the subdomain again
            if self.subdomain is None or self.token_id is None:
                continue
            if not await is_still_valid(self.token_id):
                logger.info("tunnel %s closed: token %s revoked", self.subdomain, self.token_label)
                await self._send_text(protocol.encode(protocol.AuthError("token revoked")))
                raise SessionClosed(protocol.CLOSE_AUTH_FAILED, "token revoked")
            try:
                kept = await self._registry.refresh(self.subdomain, self.token_id, self.channel)
            except RegistryError as exc:
                logger.warning("tunnel %s: registry refresh failed: %s", self.subdomain, exc)
                continue
            if not kept:
                raise SessionClosed(protocol.CLOSE_SUBDOMAIN_LOST, "subdomain lost")

    async def ended(self) -> None:
        """Release the subdomain and fail every stream still open. Idempotent."""
        released_before, self._ended = self._ended, True
        for stream in list(self._streams.values()):
            self._to_view(stream.reply, {"type": "stream.error", "message": "tunnel closed"})
        self._streams.clear()
        self._by_reply.clear()
        # Whatever the views have not been sent yet, then stop; a view that still
        # misses its message finds the tunnel gone on its own (relay.tunnel_gone).
        await self._outbox.flush(OUTBOX_FLUSH_TIMEOUT)
        await self._outbox.close()
        if self.subdomain is None or self.token_id is None or released_before:
            return
        with contextlib.suppress(RegistryError):
            await self._registry.release(
                self.subdomain, self.channel, self.token_id, settings.LUMINET_SUBDOMAIN_GRACE
            )
        logger.info(
            "tunnel %s closed (%s): %.0f s, %d requests, %d bytes in, %d bytes out",
            self.subdomain,
            self.peer,
            time.monotonic() - self._started,
            self._requests,
            self._bytes_in,
            self._bytes_out,
        )

    def _stream(self, stream_id: int, websocket: bool) -> _StreamState | None:
        """The open stream ``stream_id``, which must be of the kind the message needs."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.websocket != websocket:
            kind = "WebSocket" if stream.websocket else "HTTP"
            raise ProtocolError(f"stream {stream_id} is a {kind} stream")
        return stream

    def _new_stream(self, reply: str, websocket: bool) -> int:
        stream_id = self._next_stream
        self._next_stream += 1
        self._streams[stream_id] = _StreamState(reply=reply, websocket=websocket)
        self._by_reply[reply] = stream_id
        self._requests += 1
        return stream_id

    def _forget(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._by_reply.pop(stream.reply, None)

    def _to_view(self, reply: str, message: dict) -> None:
        self._outbox.put(reply, message)

    async def _view_lost(self, reply: str) -> None:
        # Windows make a full reply channel impossible for a live view; a dead one
        # is gone anyway.
        logger.error("tunnel %s: reply channel unusable, dropping stream", self.subdomain)
        stream_id = self._by_reply.get(reply)
        if stream_id is not None:
            self._forget(stream_id)
            with contextlib.suppress(Exception):  # the tunnel may be closing too
                await self._send_text(protocol.encode(protocol.Cancel(stream=stream_id)))
