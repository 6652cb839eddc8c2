"""A public WebSocket on a tunnel host, bridged to a WebSocket on the local server.

The public side's consumer feeds :class:`SocketBridge`; the tunnel consumer on
the other end of the channel layer turns its messages (``tunnels.messages``:
``TunnelWs*`` there, ``StreamWs*`` back) into wire messages. Messages travel as
fragments of at most ``CHUNK_SIZE``, windowed like HTTP bodies (``client.flow``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import assert_never

from channels.exceptions import ChannelFull
from django.conf import settings

from client.flow import MessageTooBig, Reassembly, ReceiveWindow, SendWindow, split_chunks
from client.protocol import (
    CHUNK_SIZE,
    MAX_WS_MESSAGE,
    WINDOW_CHUNKS,
    CloseCode,
    Headers,
    close_fields,
    end_to_end,
)
from tunnels.hosts import header
from tunnels.messages import (
    ErrorKind,
    StreamData,
    StreamError,
    StreamMessage,
    StreamResponse,
    StreamWindow,
    StreamWsAccept,
    StreamWsClose,
    StreamWsFrame,
    StreamWsReject,
    TunnelCancel,
    TunnelMessage,
    TunnelWindow,
    TunnelWsClose,
    TunnelWsFrame,
    TunnelWsOpen,
    to_layer,
)
from tunnels.registry import Route
from tunnels.relay.backends import Backends
from tunnels.relay.stream import tunnel_gone

from .budget import budget_key, scope_budget
from .cookies import host_only_cookies
from .forwarding import InvalidRequest, error_headers, forwarded
from .router import route_of

logger = logging.getLogger(__name__)

# The WebSocket handshake belongs to each hop: the client makes its own key and
# version, and permessage-deflate is not offered to the local server.
_HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)
#: Bytes from the public client waiting for the local server's credit. daphne
#: reads public frames without pausing, so beyond this the socket is closed with
#: 1013 (try again later) instead of the server holding whatever a client sends.
#: One whole message of the largest size must fit, with a window on top.
MAX_PENDING_BYTES = MAX_WS_MESSAGE + WINDOW_CHUNKS * CHUNK_SIZE

Send = Callable[[dict], Awaitable[None]]


class SocketBridge:
    def __init__(
        self, scope: dict, channel: str, send: Send, backends: Backends | None = None
    ) -> None:
        self._scope = scope
        self._channel = channel
        self._send = send
        self._backends = backends or Backends.current()
        self._layer = self._backends.layer
        self._tunnel: str | None = None
        self._subdomain = ""
        self._state = "connecting"  # -> "open" -> "closed"
        self._to_local = SendWindow()
        # Fragments from the local server: credit back one by one as each is delivered.
        self._from_local = ReceiveWindow(batch=1)
        self._message = Reassembly()
        self._pending: collections.deque[TunnelWsFrame] = collections.deque()
        self._pending_bytes = 0
        # What this socket holds in memory: its pending fragments and the local
        # server's message being reassembled.
        self._held = scope_budget(scope).account(budget_key(header(scope, b"host") or ""))
        self._tasks: list[asyncio.Task] = []

    # -- the public side ---------------------------------------------------

    async def connect(self) -> None:
        """Ask the local server for the WebSocket; refuse with an HTTP status if we can't."""
        route = route_of(self._scope)
        self._subdomain = route.subdomain
        try:
            target, headers = forwarded(self._scope, "GET", drop=_HANDSHAKE_HEADERS)
        except InvalidRequest:
            await self._deny(HTTPStatus.BAD_REQUEST)
            return
        self._tunnel = route.channel
        subprotocols = list(self._scope.get("subprotocols") or [])
        if await self._to_tunnel(TunnelWsOpen(self._channel, target, headers, subprotocols)):
            self._tasks.append(asyncio.create_task(self._handshake_deadline()))
            self._tasks.append(asyncio.create_task(self._close_when_gone(route)))

    async def public_message(self, text: str | None, data: bytes | None) -> None:
        """A message from the public client: queue its fragments for the tunnel."""
        payload = text.encode("utf-8") if text is not None else (data or b"")
        self._pending_bytes += len(payload)
        within_budget = self._held.charge(len(payload))
        if self._pending_bytes > MAX_PENDING_BYTES:
            logger.warning("tunnel %s: local WebSocket not keeping up; closing", self._subdomain)
            await self._close(CloseCode.TRY_AGAIN_LATER, "local server not keeping up")
            return
        if not within_budget:
            await self._over_budget()
            return
        pieces = split_chunks(payload)
        for index, piece in enumerate(pieces):
            fin = index == len(pieces) - 1
            self._pending.append(TunnelWsFrame(self._channel, piece, text is not None, fin))
        await self._pump()

    async def public_closed(self, code: int | None, reason: str) -> None:
        if self._state == "closed" or self._tunnel is None:
            self._stop()
            return
        if self._state == "connecting":
            await self._to_tunnel(TunnelCancel(self._channel))
        else:
            await self._to_tunnel(TunnelWsClose(self._channel, *close_fields(code, reason)))
        self._state = "closed"
        self._stop()

    # -- the tunnel side ---------------------------------------------------

    async def from_tunnel(self, message: StreamMessage) -> None:
        match message:
            case StreamWsAccept(subprotocol=subprotocol):
                await self._accepted(subprotocol)
            case StreamWsReject(status=status, headers=headers):
                await self._deny(status, self._host_only_cookies(headers))
            case StreamWsFrame():
                await self._frame(message)
            case StreamWindow(chunks=chunks):
                self._to_local.granted(chunks)
                await self._pump()
            case StreamWsClose(code=code, reason=reason):
                await self._local_closed(code, reason)
            case StreamError(kind=ErrorKind.BUSY) if self._state == "connecting":
                await self._deny(503, error_headers(503, ErrorKind.BUSY.value))
            case StreamError():
                await self._failed(message.message)
            case StreamResponse() | StreamData():
                raise AssertionError(f"{type(message).__name__} on a WebSocket stream")
            case _:
                assert_never(message)

    async def _accepted(self, subprotocol: str | None) -> None:
        if self._state != "connecting":
            return
        self._state = "open"
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        await self._pump()

    async def _frame(self, frame: StreamWsFrame) -> None:
        """A fragment from the local server: deliver the message once it is whole."""
        if self._state != "open":
            return
        self._from_local.received()
        try:
            message = self._message.add(frame.data, frame.fin)
        except MessageTooBig:
            await self._close(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        if message is None and not self._held.charge(len(frame.data)):
            await self._over_budget()
            return
        if message is not None:
            self._held.release(len(message) - len(frame.data))
            if frame.text:
                try:
                    text = message.decode("utf-8")
                except UnicodeDecodeError:
                    # RFC 6455 section 8.1: a text message must be UTF-8; 1007 says not.
                    await self._close(CloseCode.INVALID_PAYLOAD, "invalid UTF-8 in a text message")
                    return
                await self._send({"type": "websocket.send", "text": text})
            else:
                await self._send({"type": "websocket.send", "bytes": message})
        if credit := self._from_local.consumed():
            await self._to_tunnel(TunnelWindow(self._channel, credit))

    async def _local_closed(self, code: int | None, reason: str) -> None:
        if self._state == "open":
            self._state = "closed"
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        self._stop()

    async def _failed(self, message: str) -> None:
        """The local server was unreachable, or the tunnel closed."""
        if self._state == "connecting":
            await self._deny(HTTPStatus.BAD_GATEWAY)
        else:
            await self._close(CloseCode.SERVER_ERROR, message[:120])

    # -- internals ---------------------------------------------------------

    async def _pump(self) -> None:
        while self._state == "open" and self._pending and self._to_local.open:
            self._to_local.sent()
            fragment = self._pending.popleft()
            self._pending_bytes -= len(fragment.data)
            self._held.release(len(fragment.data))
            if not await self._to_tunnel(fragment):
                return

    async def _to_tunnel(self, message: TunnelMessage) -> bool:
        assert self._tunnel is not None
        try:
            await self._layer.send(self._tunnel, to_layer(message))
        except ChannelFull:
            logger.warning("tunnel %s: queue full, closing a WebSocket", self._subdomain)
            await self._close(CloseCode.TRY_AGAIN_LATER, "tunnel busy")
            return False
        return True

    async def _handshake_deadline(self) -> None:
        timeout = settings.LUMINET_REQUEST_TIMEOUT
        await asyncio.sleep(timeout)
        if self._state == "connecting":
            reason = f"504: no WebSocket handshake answer within {timeout:g} s"
            await self._to_tunnel(TunnelCancel(self._channel, reason))
            await self._deny(HTTPStatus.GATEWAY_TIMEOUT)

    async def _close_when_gone(self, route: Route) -> None:
        await tunnel_gone(self._backends.registry, route)
        await self._failed("tunnel closed")

    def _host_only_cookies(self, headers: Headers) -> Headers:
        domain = settings.LUMINET_TUNNEL_DOMAIN
        return host_only_cookies(headers, f"{self._subdomain}.{domain}", domain)

    async def _deny(self, status: int, headers: Headers | None = None) -> None:
        if self._state != "connecting":
            return
        self._state = "closed"
        # ASGI's WebSocket denial response; tunnelsite.server sends it as the HTTP answer.
        lines = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in end_to_end(headers or [])]
        await self._send(
            {"type": "websocket.http.response.start", "status": int(status), "headers": lines}
        )
        await self._send({"type": "websocket.http.response.body", "body": b""})
        self._stop()

    async def _close(self, code: int, reason: str) -> None:
        if self._state == "connecting":
            await self._deny(HTTPStatus.BAD_GATEWAY)
            return
        if self._state == "open":
            self._state = "closed"
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
            await self._to_tunnel(TunnelWsClose(self._channel, *close_fields(code, reason)))
        self._stop()

    async def _over_budget(self) -> None:
        logger.warning("tunnel %s: memory budget reached; closing a WebSocket", self._subdomain)
        await self._close(CloseCode.TRY_AGAIN_LATER, "server busy")

    def _stop(self) -> None:
        self._pending.clear()
        self._held.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
