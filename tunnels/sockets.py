"""A public WebSocket on a tunnel host, bridged to a WebSocket on the local server.

The public side's consumer feeds :class:`SocketBridge`; the tunnel consumer on
the other end of the channel layer turns its messages into wire messages (see
``relay`` for the message names shared with HTTP streams). Messages travel as
fragments of at most ``CHUNK_SIZE``, windowed like HTTP bodies.

Messages to the tunnel consumer (``reply`` is the public consumer's channel)::

    tunnel.ws_open   reply, path, headers, subprotocols
    tunnel.ws_frame  reply, data, text, fin
    tunnel.window    reply, chunks        (the public side consumed fragments)
    tunnel.ws_close  reply, code, reason
    tunnel.cancel    reply                (gave up before the handshake finished)

Messages back::

    stream.ws_accept  subprotocol
    stream.ws_reject  status, headers
    stream.ws_frame   data, text, fin
    stream.window     chunks
    stream.ws_close   code, reason
    stream.error      message
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

from client.protocol import CHUNK_SIZE, MAX_WS_MESSAGE, WINDOW_CHUNKS

from . import relay
from .forwarding import InvalidRequest, forwarded
from .hosts import TunnelHost, classify, header

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
#: Close code for "the tunnel went away" (RFC 6455 section 7.4.1: 1011 server error).
CLOSE_TUNNEL_GONE = 1011
#: A close without a closing handshake (RFC 6455 section 7.1.5); never sent in a frame.
CLOSE_ABNORMAL = 1006
#: Bytes from the public client waiting for the local server's credit. daphne
#: reads public frames without pausing, so beyond this the socket is closed with
#: 1013 (try again later) instead of the server holding whatever a client sends.
MAX_PENDING_BYTES = 8 * 1024 * 1024

Send = Callable[[dict], Awaitable[None]]


class SocketBridge:
    def __init__(self, scope: dict, channel: str, send: Send) -> None:
        self._scope = scope
        self._channel = channel
        self._send = send
        self._layer = get_channel_layer()
        self._tunnel: str | None = None
        self._subdomain = ""
        self._state = "connecting"  # -> "open" -> "closed"
        self._credit = WINDOW_CHUNKS
        self._pending: collections.deque[dict] = collections.deque()
        self._pending_bytes = 0
        self._message = bytearray()
        self._tasks: list[asyncio.Task] = []

    # -- the public side ---------------------------------------------------

    async def connect(self) -> None:
        """Ask the local server for the WebSocket; refuse with an HTTP status if we can't."""
        host = classify(header(self._scope, b"host") or "")
        if not isinstance(host, TunnelHost):
            await self._deny(HTTPStatus.BAD_REQUEST)
            return
        self._subdomain = host.subdomain
        try:
            target, headers = forwarded(self._scope, "GET", drop=_HANDSHAKE_HEADERS)
            self._tunnel = await relay.find_tunnel(self._subdomain)
        except InvalidRequest:
            await self._deny(HTTPStatus.BAD_REQUEST)
            return
        except relay.TunnelNotFound:
            await self._deny(HTTPStatus.BAD_GATEWAY)
            return
        sent = await self._to_tunnel(
            {
                "type": "tunnel.ws_open",
                "path": target,
                "headers": [list(pair) for pair in headers],
                "subprotocols": list(self._scope.get("subprotocols") or []),
            }
        )
        if sent:
            self._tasks.append(asyncio.create_task(self._handshake_deadline()))
            self._tasks.append(
                asyncio.create_task(self._close_when_gone(self._subdomain, self._tunnel))
            )

    async def public_message(self, text: str | None, data: bytes | None) -> None:
        """A message from the public client: queue its fragments for the tunnel."""
        payload = text.encode("utf-8") if text is not None else (data or b"")
        pieces = [payload[i : i + CHUNK_SIZE] for i in range(0, len(payload), CHUNK_SIZE)]
        pieces = pieces or [b""]
        self._pending_bytes += len(payload)
        if self._pending_bytes > MAX_PENDING_BYTES:
            logger.warning("tunnel %s: local WebSocket not keeping up; closing", self._subdomain)
            await self._close(1013, "local server not keeping up")
            return
        for index, piece in enumerate(pieces):
            self._pending.append(
                {
                    "type": "tunnel.ws_frame",
                    "data": piece,
                    "text": text is not None,
                    "fin": index == len(pieces) - 1,
                }
            )
        await self._pump()

    async def public_closed(self, code: int | None, reason: str) -> None:
        if self._state == "closed" or self._tunnel is None:
            self._stop()
            return
        if self._state == "connecting":
            await self._to_tunnel({"type": "tunnel.cancel"})
        else:
            await self._to_tunnel({"type": "tunnel.ws_close", "code": code, "reason": reason})
        self._state = "closed"
        self._stop()

    # -- the tunnel side ---------------------------------------------------

    async def accepted(self, subprotocol: str | None) -> None:
        if self._state != "connecting":
            return
        self._state = "open"
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        await self._pump()

    async def rejected(self, status: int) -> None:
        await self._deny(status)

    async def frame(self, data: bytes, text: bool, fin: bool) -> None:
        """A fragment from the local server: deliver the message once it is whole."""
        if self._state != "open":
            return
        self._message += data
        if len(self._message) > MAX_WS_MESSAGE:
            await self._close(1009, "message too big")
            return
        if fin:
            message = bytes(self._message)
            self._message.clear()
            if text:
                await self._send({"type": "websocket.send", "text": message.decode("utf-8")})
            else:
                await self._send({"type": "websocket.send", "bytes": message})
        await self._to_tunnel({"type": "tunnel.window", "chunks": 1})

    async def credit(self, chunks: int) -> None:
        self._credit += chunks
        await self._pump()

    async def local_closed(self, code: int | None, reason: str) -> None:
        if self._state == "open":
            self._state = "closed"
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        self._stop()

    async def failed(self, message: str) -> None:
        """The local server was unreachable, or the tunnel closed."""
        if self._state == "connecting":
            await self._deny(HTTPStatus.BAD_GATEWAY)
        else:
            await self._close(CLOSE_TUNNEL_GONE, message[:120])

    # -- internals ---------------------------------------------------------

    async def _pump(self) -> None:
        while self._state == "open" and self._pending and self._credit > 0:
            self._credit -= 1
            fragment = self._pending.popleft()
            self._pending_bytes -= len(fragment["data"])
            if not await self._to_tunnel(fragment):
                return

    async def _to_tunnel(self, message: dict) -> bool:
        assert self._tunnel is not None
        message["reply"] = self._channel
        try:
            await self._layer.send(self._tunnel, message)
        except ChannelFull:
            logger.warning("tunnel %s: queue full, closing a WebSocket", self._subdomain)
            await self._close(1013, "tunnel busy")
            return False
        return True

    async def _handshake_deadline(self) -> None:
        await asyncio.sleep(settings.LUMINET_REQUEST_TIMEOUT)
        if self._state == "connecting":
            await self._to_tunnel({"type": "tunnel.cancel"})
            await self._deny(HTTPStatus.GATEWAY_TIMEOUT)

    async def _close_when_gone(self, subdomain: str, tunnel: str) -> None:
        await relay.tunnel_gone(subdomain, tunnel)
        await self.failed("tunnel closed")

    async def _deny(self, status: int) -> None:
        if self._state != "connecting":
            return
        self._state = "closed"
        # ASGI's WebSocket denial response; tunnelsite.server sends it as the HTTP answer.
        await self._send(
            {"type": "websocket.http.response.start", "status": int(status), "headers": []}
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
            await self._to_tunnel({"type": "tunnel.ws_close", "code": code, "reason": reason})
        self._stop()

    def _stop(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
