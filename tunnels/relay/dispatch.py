"""Channels' consumer loop, made lean for the tunnel's consumers (both sides)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable

from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

from client.protocol import CloseCode

from .receiving import is_stop, stop_receiving

logger = logging.getLogger(__name__)


class ChannelLayerFailed(Exception):
    """The channel layer's receive raised: the consumer cannot get its messages."""


class LeanDispatch(AsyncConsumer):
    """Channels' consumer loop without two per-message costs.

    - No ``aclose_old_connections()`` before each handler: Channels runs it through
      ``sync_to_async``, a hop to the one shared sync thread per message, which
      serialised every tunnel on the server. These consumers touch the database
      only in ``tokens.auth``, which cleans up after itself.
    - No new task per message: Channels' ``await_many_dispatch`` creates one for
      every message it waits for. Here one loop per source waits and dispatches;
      a lock keeps Channels' rule that handlers never run concurrently.
    - The channel-layer receive is never cancelled on exit, which on Redis could
      lose another consumer's message; it is stopped instead (``tunnels.relay.receiving``).
    """

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = self.layer_receiver()
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
                await self.base_send({"type": "websocket.close", "code": CloseCode.SERVER_ERROR})
        finally:
            stopping = True
            public.cancel()  # daphne's queue: cancelling loses nothing
            with contextlib.suppress(asyncio.CancelledError, StopConsumer):
                await public
            # The channel layer's receive must not be cancelled (see tunnels.relay.receiving).
            await stop_receiving(self.channel_layer, self.channel_name, layer)

    def layer_receiver(self) -> Callable[[], Awaitable[dict]]:
        """What the loop awaits for the next channel-layer message."""
        return functools.partial(self.channel_layer.receive, self.channel_name)

    async def dispatch(self, message) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
