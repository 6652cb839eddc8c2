"""The consumer of a public WebSocket on a tunnel host. Glue only: the bridge
(``tunnels.edge.sockets``) holds every rule."""

from __future__ import annotations

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer

from tunnels.messages import stream_message
from tunnels.relay.dispatch import LeanDispatch

from .sockets import SocketBridge


class PublicSocketConsumer(LeanDispatch, AsyncConsumer):
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
