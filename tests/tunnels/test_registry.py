"""The registry of live tunnels, in memory and on a real Redis."""

import asyncio
import contextlib

import pytest
import redis

from tunnels import registry
from tunnels.registry import Claim, Member, MemoryRegistry, RedisRegistry, Refreshed, Route

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
            assert await reg.claim("abc123", 1, "chan-new") == Claim(True, replaced=("chan-old",))
            assert await reg.lookup("abc123") == Route("abc123", "chan-new")
            # The stale owner can neither refresh nor release it any more.
            assert await reg.refresh("abc123", 1, "chan-old") is Refreshed.LOST
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
            assert await reg.refresh("abc123", 1, "chan-other") is Refreshed.LOST
            assert await reg.refresh("abc123", 1, "chan-a")

    run(scenario())


def test_refresh_never_takes_back_a_released_subdomain(make_registry):
    """A heartbeat after its own release (a zombie) neither revives the entry nor claims it."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a")
            await reg.release("abc123", "chan-a", 1, grace=60)
            assert await reg.refresh("abc123", 1, "chan-a") is Refreshed.LOST
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
                assert await reg.refresh("abc123", 1, "chan-old") is Refreshed.LOST
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


def test_policy_travels_in_the_entry(make_registry):
    """A claim's policy comes back with every lookup, and with an entry a refresh restores."""
    from tunnels.edge.policy import TunnelPolicy

    build, expire = make_registry
    policy = TunnelPolicy.build(["ann:correct horse"], ["10.0.0.0/8"], ["::/0"])

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a", policy=policy)
            found = await reg.lookup("abc123")
            assert found.policy == policy
            assert found.policy.credentials_match(b"ann:correct horse")
            expire("abc123", 3600)  # the registry lost the entry
            assert await reg.refresh("abc123", 1, "chan-a", policy)
            assert (await reg.lookup("abc123")).policy == policy
            await reg.claim("plain1", 1, "chan-b")
            assert (await reg.lookup("plain1")).policy is None

    run(scenario())


# -- several connections per tunnel ------------------------------------------------

A = Member(node="node-a", tunnel="tunnel-one", slot=0)
B = Member(node="node-b", tunnel="tunnel-one", slot=1)


def channels(route):
    return sorted(c.channel for c in route.connections)


def test_a_tunnels_second_connection_joins_and_both_are_routed_to(make_registry):
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            assert await reg.claim("abc123", 1, "chan-a", take_over=False, member=A) == Claim(True)
            assert await reg.claim("abc123", 1, "chan-b", take_over=False, member=B) == Claim(True)
            route = await reg.lookup("abc123")
            picked = {(await reg.lookup("abc123")).channel for _ in range(60)}
            nodes = sorted(c.node for c in route.connections)
            return channels(route), nodes, picked

    found, nodes, picked = run(scenario())
    assert found == ["chan-a", "chan-b"] and nodes == ["node-a", "node-b"]
    assert picked == {"chan-a", "chan-b"}  # spread over both (1 in 2**59 to fail)


def test_losing_one_connection_keeps_the_tunnel_on_the_other(make_registry):
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a", member=A)
            await reg.claim("abc123", 1, "chan-b", member=B)
            first_was_last = await reg.release("abc123", "chan-a", 1, grace=60)
            route = await reg.lookup("abc123")
            second_was_last = await reg.release("abc123", "chan-b", 1, grace=60)
            after = await reg.lookup("abc123")
            other_token = await reg.claim("abc123", 2, "chan-x")
            return first_was_last, route, second_was_last, after, other_token

    first_was_last, route, second_was_last, after, other_token = run(scenario())
    assert not first_was_last and route.channel == "chan-b" and channels(route) == ["chan-b"]
    assert second_was_last and after is None
    assert other_token == Claim(False)  # held for the token, as for one connection


def test_a_reconnecting_connection_replaces_its_own_slot_only(make_registry):
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a", member=A)
            await reg.claim("abc123", 1, "chan-b", member=B)
            again = Member(node="node-c", tunnel="tunnel-one", slot=0)
            claim = await reg.claim("abc123", 1, "chan-a2", take_over=False, member=again)
            stale_refresh = await reg.refresh("abc123", 1, "chan-a", member=A)
            return claim, channels(await reg.lookup("abc123")), stale_refresh

    claim, found, stale_refresh = run(scenario())
    assert claim == Claim(True, moved=("chan-a",))
    assert found == ["chan-a2", "chan-b"]
    assert not stale_refresh  # its slot belongs to its successor: it moved
    # (a heartbeat can get there before the message saying so: it moved, not lost)
    assert stale_refresh is Refreshed.MOVED


def test_another_tunnel_of_the_token_neither_joins_nor_takes_without_take_over(make_registry):
    build, _ = make_registry
    stranger = Member(node="node-c", tunnel="tunnel-two", slot=0)

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a", member=A)
            refused = await reg.claim("abc123", 1, "chan-c", take_over=False, member=stranger)
            other_token = await reg.claim("abc123", 2, "chan-d", take_over=False, member=A)
            taken = await reg.claim("abc123", 1, "chan-e", take_over=True, member=stranger)
            return refused, other_token, taken, channels(await reg.lookup("abc123"))

    refused, other_token, taken, found = run(scenario())
    assert refused == Claim(False) and other_token == Claim(False)
    assert taken == Claim(True, replaced=("chan-a",)) and found == ["chan-e"]


def test_pooled_clients_share_a_name(make_registry):
    build, _ = make_registry
    one = Member(node="n1", tunnel="client-one", pool=True)
    two = Member(node="n2", tunnel="client-two", pool=True)
    alone = Member(node="n3", tunnel="client-three")

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("shop", 1, "chan-1", take_over=False, member=one)
            joined = await reg.claim("shop", 1, "chan-2", take_over=False, member=two)
            unpooled = await reg.claim("shop", 1, "chan-3", take_over=False, member=alone)
            return joined, unpooled, channels(await reg.lookup("shop"))

    joined, unpooled, found = run(scenario())
    assert joined == Claim(True) and unpooled == Claim(False)
    assert found == ["chan-1", "chan-2"]


def test_refresh_restores_every_connection_of_a_lost_entry(make_registry):
    """After Redis lost the entry, each connection's heartbeat puts itself back."""
    build, expire = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a", member=A)
            await reg.claim("abc123", 1, "chan-b", member=B)
            expire("abc123", registry.live_ttl() + 1)
            assert await reg.lookup("abc123") is None
            assert await reg.refresh("abc123", 1, "chan-b", member=B)
            assert await reg.refresh("abc123", 1, "chan-a", member=A)
            return channels(await reg.lookup("abc123"))

    assert run(scenario()) == ["chan-a", "chan-b"]


def test_a_connection_whose_heartbeats_stop_drops_out_alone(settings, redis_prefix):
    """On Redis each connection expires by itself: a dead process's connection leaves
    the tunnel while the other's heartbeats keep it."""
    settings.LUMINET_HEARTBEAT_INTERVAL = 0.1  # links live 0.3 s

    async def scenario():
        reg = RedisRegistry(REDIS_URL, redis_prefix)
        try:
            await reg.claim("abc123", 1, "chan-a", member=A)
            await reg.claim("abc123", 1, "chan-b", member=B)
            async with asyncio.timeout(5):
                while len((await reg.lookup("abc123")).connections) == 2:
                    await reg.refresh("abc123", 1, "chan-b", member=B)
                    await asyncio.sleep(0.05)
            return channels(await reg.lookup("abc123"))
        finally:
            await reg.close()

    assert run(scenario()) == ["chan-b"]


def test_a_disconnected_tunnels_name_is_free_whichever_connection_goes_last(make_registry):
    """The operator's disconnect releases one connection with no grace; the client then
    closes its others normally: still no hold, any token may take the name."""
    build, _ = make_registry

    async def scenario():
        async with opened(build) as reg:
            await reg.claim("abc123", 1, "chan-a", member=A)
            await reg.claim("abc123", 1, "chan-b", member=B)
            await reg.release("abc123", "chan-a", 1, grace=0)
            await reg.release("abc123", "chan-b", 1, grace=60)
            return await reg.claim("abc123", 2, "chan-x")

    assert run(scenario()) == Claim(True)
