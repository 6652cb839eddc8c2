"""Ending a channel-layer receive() without losing another channel's message."""

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer

from tunnels.relay.receiving import is_stop, stop_receiving

from .conftest import REDIS_URL


@pytest.fixture
def redis_layer(redis_prefix):
    return lambda: RedisChannelLayer(hosts=[REDIS_URL], prefix=redis_prefix)


async def _until(condition, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


def test_a_stopped_receive_returns_and_the_other_channel_gets_its_message(redis_layer):
    """channels-redis pops for every channel of a process in one receive().

    Cancelling that receive can lose what it popped for another channel
    (django/channels_redis#366: a narrow window, which e2e runs hit about one
    WebSocket close in three); a receive ended by a stop message returns it.
    """

    async def scenario():
        layer = redis_layer()
        mine, other = await layer.new_channel(), await layer.new_channel()
        receiver = asyncio.create_task(layer.receive(mine))
        # The receiver holds the process's receive lock: it is the one in BZPOPMIN.
        await _until(lambda: layer.receive_lock is not None and layer.receive_lock.locked())
        await layer.send(other, {"type": "for.other"})
        await stop_receiving(layer, mine, receiver)
        stopped = receiver.result()
        try:
            async with asyncio.timeout(3):
                return stopped, await layer.receive(other)
        finally:
            await layer.flush()

    stopped, received = asyncio.run(scenario())
    assert is_stop(stopped)
    assert received == {"type": "for.other"}
