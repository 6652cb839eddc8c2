"""Big body payloads in keys of their own on a real Redis; small ones inline."""

import asyncio
import os

import pytest
import redis

from tunnels.relay.payloads import INLINE_LIMIT, InlinePayloads, PayloadLost, RedisPayloads

from .conftest import REDIS_URL


@pytest.fixture
def payloads(redis_prefix):
    return lambda expiry=60.0: RedisPayloads(REDIS_URL, redis_prefix, expiry), redis_prefix


def data_message(size: int) -> dict:
    return {"type": "stream.data", "data": os.urandom(size), "end": False, "chunks": 1}


def test_big_payload_travels_by_key_and_is_read_once(payloads):
    build, prefix = payloads

    async def scenario():
        store = build()
        message = data_message(INLINE_LIMIT + 1)
        stored = await store.store(message)
        fetched = await store.fetch(stored)
        with pytest.raises(PayloadLost):
            await store.fetch(stored)  # GETDEL: the key is gone once read
        await store.close()
        return message, stored, fetched

    message, stored, fetched = asyncio.run(scenario())
    assert "data" not in stored and stored["data_key"].startswith(f"{prefix}body:")
    assert fetched == message


def test_small_payloads_and_other_messages_stay_inline(payloads):
    build, _ = payloads

    async def scenario():
        store = build()
        small = data_message(INLINE_LIMIT)
        head = {"type": "stream.response", "status": 200, "headers": [], "body": False}
        stored = [await store.store(small), await store.store(head)]
        await store.close()
        return stored, [small, head]

    stored, originals = asyncio.run(scenario())
    assert stored == originals


def test_expired_payload_is_reported_lost(payloads):
    build, _ = payloads

    async def scenario():
        store = build(expiry=0.001)
        stored = await store.store(data_message(INLINE_LIMIT + 1))
        # PX 1: the key is gone within milliseconds; poll for that with a deadline.
        sync = redis.Redis.from_url(REDIS_URL)
        async with asyncio.timeout(5):
            while sync.exists(stored["data_key"]):
                await asyncio.sleep(0.01)
        sync.close()
        try:
            await store.fetch(stored)
        finally:
            await store.close()

    with pytest.raises(PayloadLost):
        asyncio.run(scenario())


def test_keys_outside_the_prefix_are_refused(payloads):
    build, _ = payloads
    message = {"type": "stream.data", "data_key": "tunnel:abc123", "end": False, "chunks": 1}

    async def scenario():
        store = build()
        try:
            await store.fetch(message)
        finally:
            await store.close()

    with pytest.raises(PayloadLost):
        asyncio.run(scenario())


def test_one_process_passes_messages_through():
    message = data_message(INLINE_LIMIT * 4)
    store = InlinePayloads()
    assert asyncio.run(store.store(message)) is message
    assert asyncio.run(store.fetch(message)) is message
