"""The registry of live tunnels, in memory and on a real Redis."""

import asyncio
import contextlib

import pytest
import redis

from tunnels import registry
from tunnels.registry import Claim, MemoryRegistry, RedisRegistry, Route

from .conftest import REDIS_URL


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["memory", "redis"])
def make_registry(request):
    """Build a registry and a way to let time pass for its entries."""
    if request.param == "memory":
        clock = Clock()

        def expire(subdomain, seconds):
            clock.now += seconds

        yield lambda: MemoryRegistry(clock=clock), expire
        return
    prefix = request.getfixturevalue("redis_prefix")
    sync = redis.Redis.from_url(REDIS_URL)

    def expire(subdomain, seconds):
        # Redis keeps time itself: shorten the key's life instead of waiting.
        key = f"{prefix}tunnel:{subdomain}"
        ttl = sync.pttl(key)
        if ttl > 0 and ttl <= seconds * 1000:
            sync.delete(key)

    yield lambda: RedisRegistry(REDIS_URL, prefix), expire
    sync.close()


def run(coroutine):
    return asyncio.run(coroutine)


@contextlib.asynccontextmanager
async def opened(build):
    reg = build()
    try:
        yield reg
    finally:
        await reg.close()


def test_claim_lookup_release(make_registry):
    """A claimed subdomain routes to its channel; once released it routes nowhere."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            assert await reg.claim("abc123", 1, "chan-a") == Claim(True)
            assert await reg.lookup("abc123") == Route("abc123", "chan-a")
            await reg.release("abc123", "chan-a", 1, grace=60)
            assert await reg.lookup("abc123") is None

    run(scenario())


def test_live_subdomain_is_never_shared_across_tokens(make_registry):
    """Another token cannot claim a live subdomain."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a")
            assert await reg.claim("abc123", 2, "chan-b") == Claim(False)
            assert await reg.lookup("abc123") == Route("abc123", "chan-a")

    run(scenario())


def test_same_token_takes_over_its_live_subdomain(make_registry):
    """A reconnecting client takes its subdomain from its stale connection, which is named."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-old")
            assert await reg.claim("abc123", 1, "chan-new") == Claim(True, replaced="chan-old")
            assert await reg.lookup("abc123") == Route("abc123", "chan-new")
            # The stale owner can neither refresh nor release it any more.
            assert not await reg.refresh("abc123", 1, "chan-old")
            await reg.release("abc123", "chan-old", 1, grace=60)
            assert await reg.lookup("abc123") == Route("abc123", "chan-new")

    run(scenario())


def test_hold_is_for_the_same_token_until_grace_ends(make_registry):
    """A released subdomain is held for its token; another token gets it after the grace."""
    build, expire = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a")
            await reg.release("abc123", "chan-a", 1, grace=60)
            assert not (await reg.claim("abc123", 2, "chan-b")).granted
            assert await reg.claim("abc123", 1, "chan-c") == Claim(True)
            await reg.release("abc123", "chan-c", 1, grace=60)
            expire("abc123", 61)
            assert (await reg.claim("abc123", 2, "chan-d")).granted

    run(scenario())


def test_refresh_keeps_only_the_owner(make_registry):
    """Only the channel that owns an entry can refresh it."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a")
            assert not await reg.refresh("abc123", 1, "chan-other")
            assert await reg.refresh("abc123", 1, "chan-a")

    run(scenario())


def test_refresh_never_takes_back_a_released_subdomain(make_registry):
    """A heartbeat after its own release (a zombie) neither revives the entry nor claims it."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a")
            await reg.release("abc123", "chan-a", 1, grace=60)
            assert not await reg.refresh("abc123", 1, "chan-a")
            assert await reg.lookup("abc123") is None

    run(scenario())


def test_refresh_of_a_replaced_tunnel_leaves_the_new_owner_alone(make_registry):
    """The old connection's heartbeat fails and does not take the entry back."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-old")
            await reg.claim("abc123", 1, "chan-new")
            for _ in range(3):
                assert not await reg.refresh("abc123", 1, "chan-old")
                assert await reg.refresh("abc123", 1, "chan-new")
            assert await reg.lookup("abc123") == Route("abc123", "chan-new")

    run(scenario())


def test_refresh_restores_an_entry_the_registry_lost(make_registry):
    """After the registry lost a live entry (Redis restarted empty), its owner's heartbeat
    puts it back."""
    build, expire = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a")
            expire("abc123", registry.live_ttl() + 1)
            assert await reg.lookup("abc123") is None
            assert await reg.refresh("abc123", 1, "chan-a")
            assert await reg.lookup("abc123") == Route("abc123", "chan-a")
            assert not (await reg.claim("abc123", 2, "chan-b")).granted

    run(scenario())


def test_unrefreshed_entry_expires(make_registry):
    """A live entry whose process died (no refresh) frees its subdomain."""
    build, expire = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a")
            expire("abc123", registry.live_ttl() + 1)
            assert await reg.lookup("abc123") is None
            assert (await reg.claim("abc123", 2, "chan-b")).granted

    run(scenario())


def test_concurrent_claims_by_different_tokens_have_one_winner(make_registry):
    """Of many simultaneous claims of one subdomain by different tokens, one succeeds."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            results = await asyncio.gather(
                *(reg.claim("abc123", i, f"chan-{i}") for i in range(20))
            )
            assert sum(result.granted for result in results) == 1

    run(scenario())


def test_without_take_over_a_live_entry_of_the_same_token_stays(make_registry):
    """Only a resuming client takes its token's live subdomain over; a hold it may claim."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a")
            refused = await reg.claim("abc123", 1, "chan-b", take_over=False)
            still = await reg.lookup("abc123")
            await reg.release("abc123", "chan-a", 1, grace=60)
            after_hold = await reg.claim("abc123", 1, "chan-c", take_over=False)
            return refused, still, after_hold

    refused, still, after_hold = run(scenario())
    assert refused == Claim(False)
    assert still == Route("abc123", "chan-a")
    assert after_hold == Claim(True)
