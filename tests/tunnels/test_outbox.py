"""The consumer's outbox and the merging of messages for a view (outbox.coalesce)."""

import asyncio
import collections
import os

import pytest
from channels_redis.core import RedisChannelLayer

from tunnels.messages import (
    ErrorKind,
    StreamData,
    StreamError,
    StreamResponse,
    StreamWindow,
    StreamWsFrame,
)
from tunnels.relay.layers import InProcessChannelLayer
from tunnels.relay.outbox import Outbox, coalesce

from .conftest import REDIS_URL


def data(payload: bytes, end: bool = False, chunks: int = 1) -> StreamData:
    return StreamData(payload, end, chunks)


def drain(messages: list) -> list:
    queue = collections.deque(messages)
    out = []
    while queue:
        out.append(coalesce(queue))
    return out


def test_consecutive_body_chunks_travel_as_one():
    merged = drain([data(b"ab"), data(b"cd"), data(b"ef", end=True)])
    assert merged == [data(b"abcdef", end=True, chunks=3)]


def test_response_head_takes_the_body_queued_behind_it():
    head = StreamResponse(200, [("a", "b")], body=True)
    merged = drain([head, data(b"x"), data(b"", end=True)])
    assert merged == [StreamResponse(200, [("a", "b")], True, b"x", True, 2)]


def test_bodyless_head_and_other_kinds_are_never_merged():
    bodyless = StreamResponse(204, [], body=False)
    error = StreamError(ErrorKind.LOCAL, "gone")
    frame = StreamWsFrame(b"a", False, True)
    messages = [bodyless, frame, frame, error, data(b"late")]
    assert drain(messages) == messages


def test_nothing_is_merged_past_the_end_of_a_body():
    # Cannot happen on one reply channel, but merging must never hide an end.
    merged = drain([data(b"a", end=True), data(b"b")])
    assert merged == [data(b"a", end=True), data(b"b")]


def test_credits_add_up_and_keep_their_place():
    window = StreamWindow(4)
    error = StreamError(ErrorKind.TUNNEL_CLOSED, "x")
    merged = drain([window, window, error, window])
    assert merged == [StreamWindow(8), error, window]


async def _receive_all(layer, channel: str, count_chunks: int) -> list[dict]:
    received, chunks = [], 0
    async with asyncio.timeout(10):
        while chunks < count_chunks:
            message = await layer.receive(channel)
            received.append(message)
            chunks += message["chunks"]
    return received


def test_in_memory_layer_gets_every_message_in_order():
    async def scenario():
        layer = InProcessChannelLayer()
        channel = await layer.new_channel()
        lost = []
        outbox = Outbox(layer, lambda c: _record(lost, c), unchanged)
        for number in range(50):
            outbox.put(channel, data(b"%d," % number, end=number == 49))
        await outbox.flush(5)
        received = await _receive_all(layer, channel, 50)
        assert b"".join(m["data"] for m in received) == b"".join(b"%d," % n for n in range(50))
        assert received[-1]["end"] and lost == []

    asyncio.run(scenario())


async def _record(lost: list, channel: str) -> None:
    lost.append(channel)


async def unchanged(channel: str, message: dict) -> dict:
    return message


@pytest.fixture
def redis_layer(redis_prefix):
    return lambda: RedisChannelLayer(hosts=[REDIS_URL], prefix=redis_prefix)


def test_chunks_queued_behind_a_send_in_flight_go_out_merged(redis_layer):
    """On Redis a send takes a round trip: what queues meanwhile leaves as one message."""

    async def scenario():
        layer = redis_layer()
        channel = await layer.new_channel()
        outbox = Outbox(layer, lambda c: _record([], c), unchanged)
        chunks = [os.urandom(1000) for _ in range(40)]
        outbox.put(channel, data(chunks[0]))
        await asyncio.sleep(0)  # the sender starts, and waits on Redis
        for number, chunk in enumerate(chunks[1:], 1):
            outbox.put(channel, data(chunk, end=number == 39))
        await outbox.flush(5)
        received = await _receive_all(layer, channel, 40)
        await layer.flush()
        return chunks, received

    chunks, received = asyncio.run(scenario())
    assert b"".join(m["data"] for m in received) == b"".join(chunks)
    assert [m["end"] for m in received][-1] is True
    # The first send goes alone; the other 39 queued behind it.
    assert len(received) == 2, [m["chunks"] for m in received]


def test_a_full_channel_drops_its_queue_and_says_so():
    async def scenario():
        layer = InProcessChannelLayer(capacity=1)
        channel = await layer.new_channel()
        lost: list[str] = []
        outbox = Outbox(layer, lambda c: _record(lost, c), unchanged)
        frame = StreamWsFrame(b"a", False, True)
        for _ in range(3):
            outbox.put(channel, frame)
        await outbox.flush(5)
        first = await layer.receive(channel)
        return lost, first, channel

    lost, first, channel = asyncio.run(scenario())
    assert first["data"] == b"a"
    assert lost == [channel]  # once, not once per dropped message
