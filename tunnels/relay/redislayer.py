"""channels-redis, with messages between two ends in one process kept in that process.

On Redis every channel-layer message crosses to Redis and back, even when the
public request and the tunnel it goes to are in the same server process: about
ten Redis round trips for a small request. With several processes behind a
load balancer, a request lands on a process holding one of its tunnel's
connections often (always, with one process), and then nothing needs Redis.

So each channel this process creates has an inbox here. A message for such a
channel goes straight into its inbox; a message for any other channel goes
through Redis as before. A channel that others may reach through Redis (a
consumer's: public requests arrive from any process) also has a pump: a
channels-redis ``receive()`` that moves what arrives through Redis into the
inbox. A reply channel for a stream whose tunnel is in this process is created
with :meth:`LocalDeliveryLayer.new_local_channel`: nobody outside can know its
name, so it needs no pump and costs Redis nothing.

The order of one sender's messages is kept: a sender sends a given channel's
messages one way only, here or through Redis, for the channel's whole life.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from channels_redis.core import RedisChannelLayer

from tunnels.outages import RedisGate

from .receiving import STOP_TYPE, is_stop

#: Seconds a pump may take to see its stop message before it is cancelled.
PUMP_STOP_TIMEOUT = 5.0


@dataclass
class _Failed:
    """What the pump puts in the inbox when Redis fails: the receiver raises it."""

    error: BaseException


@dataclass
class _Inbox:
    capacity: int
    #: Whether messages may also come through Redis (then a pump runs).
    remote: bool
    queue: asyncio.Queue[dict[str, Any] | _Failed] = field(default_factory=asyncio.Queue)
    pump: asyncio.Task[None] | None = None

    def put(self, message: dict[str, Any]) -> None:
        if self.queue.qsize() >= self.capacity:
            raise ChannelFull()
        self.queue.put_nowait(message)


class LocalDeliveryLayer(RedisChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inboxes: dict[str, _Inbox] = {}
        #: After a failure, pumps wait for one probe to see Redis back (tunnels.outages).
        self._redis = RedisGate(self._ping)

    async def _ping(self) -> None:
        for index in range(self.ring_size):
            await self.connection(index).ping()

    async def new_channel(self, prefix: str = "specific") -> str:
        """A channel that any process may send to (a consumer's)."""
        name = await super().new_channel(prefix)
        self._inboxes[name] = _Inbox(self.capacity, remote=True)
        return name

    async def new_local_channel(self, prefix: str = "specific") -> str:
        """A channel only this process sends to: no Redis at all."""
        name = await super().new_channel(prefix)
        self._inboxes[name] = _Inbox(self.capacity, remote=False)
        return name

    def is_local(self, channel: str) -> bool:
        """Whether a message for ``channel`` stays in this process."""
        return channel in self._inboxes

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        inbox = self._inboxes.get(channel)
        if inbox is None:
            await super().send(channel, message)
            return
        assert isinstance(message, dict) and "type" in message, "a message is a dict with a type"
        # A shallow copy keeps sender and receiver apart, as a trip through Redis
        # would: nobody changes a message's values once it is sent (tunnels.messages).
        inbox.put(dict(message))

    async def receive(self, channel: str) -> dict[str, Any]:
        inbox = self._inboxes.get(channel)
        if inbox is None:
            return await super().receive(channel)
        if inbox.remote and (inbox.pump is None or inbox.pump.done()):
            # A receive after a failure starts a pump again, which waits for Redis
            # (a tunnel waits an outage out: tunnels.outages); local messages flow.
            inbox.pump = asyncio.create_task(self._pump(channel, inbox))
        item = await inbox.queue.get()
        if isinstance(item, _Failed):
            raise item.error
        return item

    async def _pump(self, channel: str, inbox: _Inbox) -> None:
        """Move what reaches ``channel`` through Redis into its inbox, until stopped."""
        await self._redis.wait()
        while True:
            try:
                message = await super().receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis failing: the receiver learns it, as before
                self._redis.down()
                inbox.queue.put_nowait(_Failed(exc))
                return
            if is_stop(message):
                return
            # Redis bounded it already (the layer's capacity); here it only waits.
            inbox.queue.put_nowait(message)

    async def forget(self, channel: str) -> None:
        """``channel``'s receiver has ended: drop its inbox, and end its pump.

        The pump is sent a stop message through Redis rather than cancelled: a
        cancelled channels-redis receive can lose another channel's message
        (``tunnels.relay.receiving``).
        """
        inbox = self._inboxes.pop(channel, None)
        if inbox is None or inbox.pump is None or inbox.pump.done():
            return
        try:
            await super().send(channel, {"type": STOP_TYPE})
        except Exception:  # Redis unreachable: the pump's receive fails or is cancelled
            inbox.pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(inbox.pump), PUMP_STOP_TIMEOUT)
        if not inbox.pump.done():
            inbox.pump.cancel()


def is_local(layer: BaseChannelLayer, channel: str) -> bool:
    """Whether ``layer`` keeps a message for ``channel`` in this process (on Redis:
    its receiver is here; the in-process layer keeps every message here)."""
    if isinstance(layer, LocalDeliveryLayer):
        return layer.is_local(channel)
    return not isinstance(layer, RedisChannelLayer)


async def new_reply_channel(layer: BaseChannelLayer, tunnel_channel: str) -> str:
    """A stream's reply channel: local-only when its tunnel is in this process."""
    if isinstance(layer, LocalDeliveryLayer) and layer.is_local(tunnel_channel):
        return await layer.new_local_channel()
    return await layer.new_channel()
