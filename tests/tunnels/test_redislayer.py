"""channels-redis with local delivery, against a real Redis: messages between two ends
in one process never reach Redis; messages from other processes still arrive."""

import asyncio

import pytest
import redis
from channels.exceptions import ChannelFull

from tunnels.relay.receiving import stop_receiving
from tunnels.relay.redislayer import LocalDeliveryLayer, is_local, new_reply_channel

from .conftest import REDIS_URL

CAPACITY = 5


@pytest.fixture
def make_layer(redis_prefix):
    """A layer per simulated process, all on the test's own key prefix."""
    return lambda: LocalDeliveryLayer(hosts=[REDIS_URL], prefix=redis_prefix, capacity=CAPACITY)


def keys_of(prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return list(client.scan_iter(match=f"{prefix}*", count=1000))
    finally:
        client.close()


async def received(layer: LocalDeliveryLayer, channel: str, count: int) -> list[dict]:
    async with asyncio.timeout(5):
        return [await layer.receive(channel) for _ in range(count)]


def test_a_message_between_two_local_ends_never_reaches_redis(make_layer, redis_prefix):
    async def scenario():
        layer = make_layer()
        consumer = await layer.new_channel()
        reply = await new_reply_channel(layer, consumer)
        assert is_local(layer, consumer) and is_local(layer, reply)
        await layer.send(consumer, {"type": "tunnel.open", "n": 1})
        await layer.send(reply, {"type": "stream.response", "n": 2})
        in_redis = keys_of(redis_prefix)
        got = await received(layer, consumer, 1) + await received(layer, reply, 1)
        return in_redis, got

    in_redis, got = asyncio.run(scenario())
    assert in_redis == []
    assert got == [{"type": "tunnel.open", "n": 1}, {"type": "stream.response", "n": 2}]


def test_messages_from_another_process_arrive_in_order_with_local_ones(make_layer):
    async def scenario():
        here, there = make_layer(), make_layer()
        consumer = await here.new_channel()
        assert not is_local(there, consumer)
        for n in range(3):
            await there.send(consumer, {"type": "remote", "n": n})
        got = await received(here, consumer, 3)
        await here.send(consumer, {"type": "local"})
        got += await received(here, consumer, 1)
        await there.send(consumer, {"type": "remote", "n": 3})
        got += await received(here, consumer, 1)
        await here.flush()
        return got

    got = asyncio.run(scenario())
    assert got == [
        {"type": "remote", "n": 0},
        {"type": "remote", "n": 1},
        {"type": "remote", "n": 2},
        {"type": "local"},
        {"type": "remote", "n": 3},
    ]


def test_a_reply_channel_for_a_tunnel_elsewhere_goes_through_redis(make_layer):
    async def scenario():
        here, there = make_layer(), make_layer()
        remote_tunnel = await there.new_channel()
        reply = await new_reply_channel(here, remote_tunnel)
        # The remote tunnel answers through Redis: the reply channel must receive it.
        await there.send(reply, {"type": "stream.response"})
        got = await received(here, reply, 1)
        await here.flush()
        return got

    assert asyncio.run(scenario()) == [{"type": "stream.response"}]


def test_a_full_local_channel_refuses_like_redis_does(make_layer):
    async def scenario():
        layer = make_layer()
        channel = await layer.new_local_channel()
        for n in range(CAPACITY):
            await layer.send(channel, {"type": "fill", "n": n})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "one.more"})

    asyncio.run(scenario())


def test_stopping_a_receiver_ends_its_pump_and_drops_its_inbox(make_layer):
    async def scenario():
        layer = make_layer()
        consumer = await layer.new_channel()
        receiver = asyncio.create_task(layer.receive(consumer))
        async with asyncio.timeout(5):
            while layer._inboxes[consumer].pump is None:
                await asyncio.sleep(0.005)
        pump = layer._inboxes[consumer].pump
        await stop_receiving(layer, consumer, receiver)
        await layer.flush()
        return pump.done(), is_local(layer, consumer), layer.receive_count

    pump_done, still_local, receiving = asyncio.run(scenario())
    assert pump_done and not still_local
    assert receiving == 0, "a channels-redis receive is still waiting"


def test_redis_failing_reaches_the_receiver_and_local_delivery_goes_on():
    async def scenario():
        layer = LocalDeliveryLayer(hosts=["redis://127.0.0.1:1"], prefix="lmtest-down")
        consumer = await layer.new_channel()
        other = await layer.new_local_channel()
        await layer.send(other, {"type": "still.here"})
        local = await received(layer, other, 1)
        with pytest.raises(Exception) as failure:
            await received(layer, consumer, 1)
        return local, failure.value

    local, failure = asyncio.run(scenario())
    assert local == [{"type": "still.here"}]
    assert isinstance(failure, (ConnectionError, OSError, redis.exceptions.ConnectionError))
