"""Channel-layer sends that keep each channel's order without making the sender wait.

The tunnel consumer handles one WebSocket message at a time. Awaiting every
channel-layer send there means one Redis round trip per body chunk, with the
tunnel idle in between: transfers on Redis stalled near 25 MB/s with every
process mostly idle. An :class:`Outbox` queues each message and sends it from a
task of that channel's own, so the consumer goes straight on to the next frame;
whatever queued behind a send still in flight goes out merged (see
``coalesce``), one channel-layer message instead of several.

Memory stays bounded by the flow-control windows, not here: a stream never has
more than its window of body chunks outstanding, queued or in a channel.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from tunnels.messages import StreamData, StreamMessage, StreamResponse, StreamWindow, to_layer

logger = logging.getLogger(__name__)

Prepare = Callable[[str, dict], Awaitable[dict]]
"""Turns a message for a channel into what is sent (e.g. moves a big payload aside
for a channel in another process, see ``payloads``)."""

OnLost = Callable[[str], Awaitable[None]]
"""Called with a channel whose messages could not be sent (it was full, or the
layer failed); what was queued for it is dropped."""


def coalesce(queue: collections.deque[StreamMessage]) -> StreamMessage:
    """Pop the next message for a view from ``queue``, merged with what can go with it.

    Body chunks queued behind a response head or behind other body chunks travel
    in one message, and so do consecutive credits: fewer channel-layer messages,
    the same bytes in the same order.
    """
    message = queue.popleft()
    if isinstance(message, StreamWindow):
        credit = message.chunks
        while queue and isinstance(next_credit := queue[0], StreamWindow):
            queue.popleft()
            credit += next_credit.chunks
        return StreamWindow(credit)
    if not isinstance(message, (StreamData, StreamResponse)) or not (
        queue and isinstance(queue[0], StreamData) and not message.end
    ):
        return message
    if isinstance(message, StreamResponse) and not message.body:
        return message
    # A head may carry the start of its body already (the consumer joined them).
    parts = [message.data] if message.data is not None else []
    chunks: int = message.chunks
    end: bool = message.end
    while queue and isinstance(queue[0], StreamData) and not end:
        data = queue.popleft()
        assert isinstance(data, StreamData)
        parts.append(data.data)
        chunks += data.chunks
        end = data.end
    return dataclasses.replace(message, data=b"".join(parts), end=end, chunks=chunks)


class Outbox:
    def __init__(self, layer: BaseChannelLayer, on_lost: OnLost, prepare: Prepare) -> None:
        self._layer = layer
        self._on_lost = on_lost
        self._prepare = prepare
        self._queues: dict[str, collections.deque[StreamMessage]] = {}
        self._senders: dict[str, asyncio.Task] = {}

    def put(self, channel: str, message: StreamMessage) -> None:
        """Queue ``message`` for ``channel``; it is sent after everything queued before it."""
        queue = self._queues.get(channel)
        if queue is None:
            queue = self._queues[channel] = collections.deque()
            self._senders[channel] = asyncio.create_task(self._send_all(channel, queue))
        queue.append(message)

    async def _send_all(self, channel: str, queue: collections.deque[StreamMessage]) -> None:
        try:
            while queue:
                message = coalesce(queue)
                try:
                    await self._layer.send(channel, await self._prepare(channel, to_layer(message)))
                except Exception as exc:
                    if not isinstance(exc, ChannelFull):
                        logger.error("sending to %s failed: %r", channel, exc)
                    queue.clear()
                    await self._on_lost(channel)
        finally:
            # No await between the queue running dry and this: a put() either landed
            # in the queue above or starts a new sender.
            del self._queues[channel]
            del self._senders[channel]

    async def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for everything queued to be sent."""
        senders = list(self._senders.values())
        if senders:
            await asyncio.wait(senders, timeout=timeout)

    async def close(self) -> None:
        """Stop sending; whatever is still queued is dropped."""
        senders = list(self._senders.values())
        for sender in senders:
            sender.cancel()
        for sender in senders:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
