"""The embedded default's channel layer."""

import asyncio

import pytest
from channels.exceptions import ChannelFull

from tunnels.relay.layers import InProcessChannelLayer


def test_received_message_is_not_the_sent_dict():
    async def scenario():
        layer = InProcessChannelLayer()
        sent = {"type": "stream.data", "data": b"x", "end": False}
        await layer.send("c", sent)
        sent["end"] = True  # a sender changing its dict afterwards changes nothing
        return await layer.receive("c")

    assert asyncio.run(scenario()) == {"type": "stream.data", "data": b"x", "end": False}


def test_capacity_still_applies():
    async def scenario():
        layer = InProcessChannelLayer(capacity=1)
        await layer.send("c", {"type": "a"})
        with pytest.raises(ChannelFull):
            await layer.send("c", {"type": "b"})

    asyncio.run(scenario())


def test_expired_messages_are_swept_at_most_once_a_second():
    layer = InProcessChannelLayer(expiry=-1)  # every message is born expired
    asyncio.run(layer.send("old", {"type": "a"}))
    layer._clean_expired()  # what receive() calls first
    assert "old" not in layer.channels
    asyncio.run(layer.send("later", {"type": "b"}))
    layer._clean_expired()  # within SWEEP_INTERVAL of the last sweep: skipped
    assert "later" in layer.channels
