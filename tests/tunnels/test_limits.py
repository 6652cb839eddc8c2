"""The limits' contract, on the memory backend and on a real Redis (a key prefix of its own)."""

import asyncio
import contextlib
import time

import pytest

from tunnels.limits import MemoryLimits, RedisLimits, Verdict

from .conftest import REDIS_URL

WINDOW = 60.0


class Clock:
    """Wall-clock time the test moves; starts 10 s into the next window, so Redis (which
    expires keys by its own clock) keeps every counter the test makes."""

    def __init__(self):
        self.now = (time.time() // WINDOW + 1) * WINDOW + 10.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["memory", "redis"])
def make_limits(request):
    """Build limits on one backend, driven by a clock of the test's."""
    clock = Clock()
    if request.param == "memory":
        yield (lambda: MemoryLimits(clock=clock)), clock
        return
    prefix = request.getfixturevalue("redis_prefix")
    yield (lambda: RedisLimits(REDIS_URL, prefix, clock=clock)), clock


def run(coroutine):
    return asyncio.run(coroutine)


@contextlib.asynccontextmanager
async def opened(build):
    limits = build()
    try:
        yield limits
    finally:
        await limits.close()


def test_hits_are_allowed_up_to_the_limit_in_a_window(make_limits):
    """Exactly ``limit`` hits pass in one window; the next says when the window ends."""
    build, _ = make_limits

    async def scenario():
        async with opened(build) as limits:
            verdicts = [await limits.hit("rate:a", 3, WINDOW) for _ in range(4)]
            other = await limits.hit("rate:b", 3, WINDOW)
        return verdicts, other

    verdicts, other = run(scenario())
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1] == Verdict(False, 50)
    assert other.allowed, "keys count apart"


def test_the_next_window_starts_from_zero(make_limits):
    """Past the window's end the count starts again."""
    build, clock = make_limits

    async def scenario():
        async with opened(build) as limits:
            for _ in range(2):
                await limits.hit("rate:a", 2, WINDOW)
            refused = await limits.hit("rate:a", 2, WINDOW)
            clock.now += 50.0
            allowed = await limits.hit("rate:a", 2, WINDOW)
        return refused, allowed

    refused, allowed = run(scenario())
    assert not refused.allowed
    assert allowed == Verdict(True, 60)


def test_check_counts_nothing(make_limits):
    """check() says whether the key is under its limit without adding to it."""
    build, _ = make_limits

    async def scenario():
        async with opened(build) as limits:
            before = [await limits.check("fail:x", 2, WINDOW) for _ in range(3)]
            await limits.hit("fail:x", 2, WINDOW)
            middle = await limits.check("fail:x", 2, WINDOW)
            await limits.hit("fail:x", 2, WINDOW)
            after = await limits.check("fail:x", 2, WINDOW)
        return before, middle, after

    before, middle, after = run(scenario())
    assert all(v.allowed for v in before)
    assert middle.allowed
    assert after == Verdict(False, 50)


def test_a_group_holds_at_most_limit_members(make_limits):
    """join() admits members up to the limit; a member already in always stays in."""
    build, _ = make_limits

    async def scenario():
        async with opened(build) as limits:
            first = await limits.join("7", "aaa", 2, 45)
            second = await limits.join("7", "bbb", 2, 45)
            third = await limits.join("7", "ccc", 2, 45)
            again = await limits.join("7", "aaa", 2, 45)
            other_group = await limits.join("8", "ccc", 2, 45)
            await limits.leave("7", "bbb")
            after_leave = await limits.join("7", "ccc", 2, 45)
        return first, second, third, again, other_group, after_leave

    assert run(scenario()) == (True, True, False, True, True, True)


def test_members_that_are_not_kept_alive_stop_counting(make_limits):
    """A member whose ttl passed without stay() (its process crashed) frees its place;
    one kept alive by stay() does not."""
    build, clock = make_limits

    async def scenario():
        async with opened(build) as limits:
            await limits.join("7", "kept", 2, 45)
            await limits.join("7", "crashed", 2, 45)
            clock.now += 30
            await limits.stay("7", "kept", 45)
            full = await limits.join("7", "new", 2, 45)
            clock.now += 20
            freed = await limits.join("7", "new", 2, 45)
            still_full = await limits.join("7", "another", 2, 45)
        return full, freed, still_full

    assert run(scenario()) == (False, True, False)


def test_counts_are_shared_by_two_instances_on_redis(redis_prefix):
    """Two processes' limits on one Redis count together: exactly ``limit`` pass in all."""
    clock = Clock()

    async def scenario():
        one = RedisLimits(REDIS_URL, redis_prefix, clock=clock)
        two = RedisLimits(REDIS_URL, redis_prefix, clock=clock)
        try:
            verdicts = await asyncio.gather(
                *(limits.hit("rate:shared", 5, WINDOW) for limits in [one, two] * 6)
            )
        finally:
            await one.close()
            await two.close()
        return verdicts

    assert sum(v.allowed for v in run(scenario())) == 5


def test_redis_counters_expire_after_their_window(redis_prefix):
    """A window's counter carries an expiry, so Redis never keeps old windows."""
    import redis

    clock = Clock()
    limits = RedisLimits(REDIS_URL, redis_prefix, clock=clock)

    async def scenario():
        try:
            await limits.hit("rate:a", 1, WINDOW)
        finally:
            await limits.close()

    run(scenario())
    sync = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(sync.scan_iter(match=f"{redis_prefix}limit:*"))
        assert len(keys) == 1
        assert sync.pexpiretime(keys[0]) == int((clock.now // WINDOW + 1) * WINDOW * 1000) + 1000
    finally:
        sync.close()
