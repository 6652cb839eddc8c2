"""Channels consumers. Glue only: decode, call ``session``, encode."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from client.protocol import AUTH_TIMEOUT, CLOSE_AUTH_TIMEOUT

from .messages import stream_message
from .receiving import is_stop, stop_receiving
from .relay import Backends
from .session import SessionClosed, TunnelSession
from .sockets import SocketBridge

logger = logging.getLogger(__name__)

#: RFC 6455 section 7.4.1: the server met a condition that kept it from going on.
CLOSE_SERVER_ERROR = 1011


class ChannelLayerFailed(Exception):
    """The channel layer's receive raised: the consumer cannot get its messages."""


class _LeanDispatch(AsyncConsumer):
    """Channels' consumer loop without two per-message costs.

    - No ``aclose_old_connections()`` before each handler: Channels runs it through
      ``sync_to_async``, a hop to the one shared sync thread per message, which
      serialised every tunnel on the server. These consumers touch the database
      only in ``tokens.auth``, which cleans up after itself.
    - No new task per message: Channels' ``await_many_dispatch`` creates one for
      every message it waits for. Here one loop per source waits and dispatches;
      a lock keeps Channels' rule that handlers never run concurrently.
    - The channel-layer receive is never cancelled on exit, which on Redis could
      lose another consumer's message; it is stopped instead (``tunnels.receiving``).
    """

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        one_at_a_time = asyncio.Lock()
        stopping = False

        async def pump(source) -> None:
            while True:
                try:
                    message = await source()
                except Exception as exc:
                    if source is self.channel_receive:
                        raise ChannelLayerFailed(exc.__class__.__name__) from exc
                    raise
                if stopping or is_stop(message):
                    return
                async with one_at_a_time:
                    await self.dispatch(message)

        public, layer = (
            asyncio.create_task(pump(receive)),
            asyncio.create_task(pump(self.channel_receive)),
        )
        try:
            done, _ = await asyncio.wait([public, layer], return_when=asyncio.FIRST_COMPLETED)
            for loop in done:
                loop.result()
        except StopConsumer:
            pass
        except ChannelLayerFailed as exc:
            # Redis unreachable, say: not our bug, and the peer should reconnect.
            logger.warning("%s: channel layer failed (%s); closing", type(self).__name__, exc)
            with contextlib.suppress(Exception):
                await self.base_send({"type": "websocket.close", "code": CLOSE_SERVER_ERROR})
        finally:
            stopping = True
            public.cancel()  # daphne's queue: cancelling loses nothing
            with contextlib.suppress(asyncio.CancelledError, StopConsumer):
                await public
            # The channel layer's receive must not be cancelled (see tunnels.receiving).
            await stop_receiving(self.channel_layer, self.channel_name, layer)

    async def dispatch(self, message) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class TunnelConsumer(_LeanDispatch, AsyncWebsocketConsumer):
    """Owns one client's tunnel WebSocket (``/tunnel`` on the main host)."""

    session: TunnelSession | None = None
    _watchers: list[asyncio.Task] = []

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ends (a disconnect, daphne cancelling it on shutdown
            # without one, or a crash such as the channel layer failing), its watchers
            # end with it and the subdomain is released. A heartbeat that outlived its
            # consumer kept the subdomain live for a dead channel (issue 8).
            await self._end()

    async def _end(self) -> None:
        watchers, self._watchers = self._watchers, []
        for task in watchers:
            task.cancel()
        for task in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.ended()

    @property
    def _live(self) -> TunnelSession:
        assert self.session is not None, "a message before connect()"
        return self.session

    async def connect(self) -> None:
        client = self.scope.get("client") or ("?", 0)
        self.session = TunnelSession(
            self.channel_name,
            f"{client[0]}:{client[1]}",
            send_text=lambda text: self.send(text_data=text),
            send_bytes=lambda data: self.send(bytes_data=data),
            backends=Backends.current(),
        )
        await self.accept()
        self._watchers = [
            asyncio.create_task(self._guard(self._auth_deadline())),
            asyncio.create_task(self._guard(self.session.keep_alive())),
        ]

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT)
        if self._live.subdomain is None:
            raise SessionClosed(CLOSE_AUTH_TIMEOUT, "auth timeout")

    async def _guard(self, work) -> None:
        try:
            await work
        except SessionClosed as closed:
            await self.close(code=closed.code, reason=closed.reason)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        await self._guard(self._live.received(text_data, bytes_data))

    async def disconnect(self, code) -> None:
        await self._end()

    async def _from_view(self, event) -> None:
        # Channel-layer messages from views and public sockets (tunnels.messages).
        await self._guard(self._live.from_view(event))

    tunnel_open = tunnel_data = tunnel_window = tunnel_cancel = _from_view
    tunnel_ws_open = tunnel_ws_frame = tunnel_ws_close = tunnel_replaced = _from_view


class PublicSocketConsumer(_LeanDispatch, AsyncConsumer):
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

    async def _from_tunnel(self, event) -> None:
        # Channel-layer messages from the tunnel consumer (tunnels.messages).
        await self.bridge.from_tunnel(stream_message(event))

    stream_ws_accept = stream_ws_reject = stream_ws_frame = _from_tunnel
    stream_window = stream_ws_close = stream_error = _from_tunnel
