"""Channels consumers. Glue only: decode, call ``session``, encode."""

from __future__ import annotations

import asyncio
import contextlib

from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from client.protocol import AUTH_TIMEOUT, CLOSE_AUTH_TIMEOUT, CLOSE_REPLACED

from .session import SessionClosed, TunnelSession
from .sockets import SocketBridge


class _NoDatabaseDispatch:
    """Dispatch without Channels' per-message ``aclose_old_connections()``.

    Channels runs that through ``sync_to_async`` before every handler: a hop to the
    one shared sync thread per message, which serialised every tunnel on the
    server. These consumers touch the database only in ``tokens.auth``, which
    cleans up after itself.
    """

    async def dispatch(self, message) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class TunnelConsumer(_NoDatabaseDispatch, AsyncWebsocketConsumer):
    """Owns one client's tunnel WebSocket (``/tunnel`` on the main host)."""

    session: TunnelSession | None = None
    _watchers: list[asyncio.Task] = []

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # daphne cancels consumers on shutdown without a disconnect event: release
            # the subdomain anyway, so a restarted server can give it back.
            if self.session is not None:
                await self.session.ended()

    async def connect(self) -> None:
        client = self.scope.get("client") or ("?", 0)
        self.session = TunnelSession(
            self.channel_name,
            f"{client[0]}:{client[1]}",
            send_text=lambda text: self.send(text_data=text),
            send_bytes=lambda data: self.send(bytes_data=data),
        )
        await self.accept()
        self._watchers = [
            asyncio.create_task(self._guard(self._auth_deadline())),
            asyncio.create_task(self._guard(self.session.keep_alive())),
        ]

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT)
        if self.session.subdomain is None:
            raise SessionClosed(CLOSE_AUTH_TIMEOUT, "auth timeout")

    async def _guard(self, work) -> None:
        try:
            await work
        except SessionClosed as closed:
            await self.close(code=closed.code, reason=closed.reason)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        try:
            await self.session.received(text_data, bytes_data)
        except SessionClosed as closed:
            await self.close(code=closed.code, reason=closed.reason)

    async def disconnect(self, code) -> None:
        for task in self._watchers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.ended()

    # Channel-layer messages from views (see tunnels.relay).

    async def tunnel_open(self, event) -> None:
        await self.session.open_stream(event)

    async def tunnel_data(self, event) -> None:
        await self.session.stream_data(event)

    async def tunnel_window(self, event) -> None:
        await self.session.stream_window(event)

    async def tunnel_cancel(self, event) -> None:
        await self.session.cancel_stream(event)

    async def tunnel_ws_open(self, event) -> None:
        await self.session.open_socket(event)

    async def tunnel_ws_frame(self, event) -> None:
        await self.session.socket_frame(event)

    async def tunnel_ws_close(self, event) -> None:
        await self.session.close_socket(event)

    async def tunnel_replaced(self, event) -> None:
        await self.close(code=CLOSE_REPLACED, reason="replaced by a newer connection")


class PublicSocketConsumer(_NoDatabaseDispatch, AsyncConsumer):
    """A public WebSocket on a tunnel host, bridged to the local server."""

    bridge: SocketBridge

    async def websocket_connect(self, message) -> None:
        self.bridge = SocketBridge(self.scope, self.channel_name, self.send)
        await self.bridge.connect()

    async def websocket_receive(self, message) -> None:
        await self.bridge.public_message(message.get("text"), message.get("bytes"))

    async def websocket_disconnect(self, message) -> None:
        await self.bridge.public_closed(message.get("code"), message.get("reason") or "")
        raise StopConsumer

    # Channel-layer messages from the tunnel consumer (see tunnels.sockets).

    async def stream_ws_accept(self, event) -> None:
        await self.bridge.accepted(event["subprotocol"])

    async def stream_ws_reject(self, event) -> None:
        await self.bridge.rejected(event["status"])

    async def stream_ws_frame(self, event) -> None:
        await self.bridge.frame(event["data"], event["text"], event["fin"])

    async def stream_window(self, event) -> None:
        await self.bridge.credit(event["chunks"])

    async def stream_ws_close(self, event) -> None:
        await self.bridge.local_closed(event["code"], event["reason"])

    async def stream_error(self, event) -> None:
        await self.bridge.failed(event["message"])
