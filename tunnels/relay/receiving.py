"""Ending a channel-layer ``receive()`` without cancelling it.

channels-redis can lose a message when a ``receive()`` is cancelled while it
waits in ``BZPOPMIN`` (django/channels_redis#366): redis-py finishes the command
anyway and drops its answer. One ``receive()`` per process pops for every
channel of that process, so the message lost may be another consumer's: a
request that never reaches its tunnel, a WebSocket close the local server never
sees. Measured here: with consumers cancelling their receive on exit, one
public WebSocket close in about ten reached nobody. So a receive that must end
early is sent a stop message and returns it; cancelling is the fallback for a
channel layer that does not answer at all.
"""

from __future__ import annotations

import asyncio
import contextlib

from channels.layers import BaseChannelLayer

STOP_TYPE = "luminet.stop_receiving"
#: Seconds to wait for a receive to return the stop message before cancelling it.
STOP_TIMEOUT = 5.0


def is_stop(message: dict) -> bool:
    return message.get("type") == STOP_TYPE


async def stop_receiving(layer: BaseChannelLayer, channel: str, receiver: asyncio.Task) -> None:
    """Make ``receiver`` (a task in ``layer.receive(channel)``) return, then wait for it.

    The receiver must return when it receives a stop message (see ``is_stop``).
    """
    if not receiver.done():
        with contextlib.suppress(Exception):  # full, or unreachable: then cancel below
            await layer.send(channel, {"type": STOP_TYPE})
        await asyncio.wait([receiver], timeout=STOP_TIMEOUT)
        if not receiver.done():
            receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver
    # A layer that keeps an inbox per channel (tunnels.relay.redislayer) drops this one.
    forget = getattr(layer, "forget", None)
    if forget is not None:
        await forget(channel)
