"""Limits that hold across every server process: request rates, failed
authentications, and tunnels per token.

One small interface, :class:`Limits`, with two backends like the registry's: a
process's memory (the embedded default) and Redis (when ``REDIS_URL`` is set, so
a limit holds whichever process a request or a client lands on).

Rates are **fixed windows** of ``LUMINET_LIMIT_WINDOW_SECONDS``, numbered from
the epoch, with one counter per key and window (``<prefix>limit:<key>:<n>``).
Counting is one atomic round trip on Redis (INCR and PEXPIREAT in a MULTI), so
processes never lose each other's counts, and a window's counter expires on its
own. The price of fixed windows is the edge: a caller may spend a window's limit
at its end and the next window's at the start, so up to twice the limit can pass
within one window's length; a sliding log would not allow that but costs memory
per request. Windows are numbered by each process's wall clock: processes must
agree on the time (NTP) to share a window's edges.

Tunnels per token are a sorted set per token (``<prefix>tunnels:<token id>``)
whose members are subdomains scored by when they expire: a tunnel joins when it
claims its subdomain, each heartbeat pushes its expiry on like its registry
entry's, and it leaves when it closes. A crashed process's tunnels stop counting
when their expiry passes, as their registry entries do.

When Redis fails, the operations raise :class:`LimitsUnavailable`; callers answer
as they do when the registry fails (a 503 ``unavailable`` at the edge, "server
busy, try again" at tunnel authentication). Failing open would let a Redis outage
switch every limit off; the registry is unreachable then anyway, so nothing would
be served either way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from tunnels.redisclient import PerLoopRedis
from tunnels.registry import Route
from tunnels.relay.errors import TunnelError, Unavailable

#: Windows past the current one are kept in memory for this many windows at most.
_MEMORY_WINDOWS_KEPT = 2
#: Milliseconds a window's Redis counter outlives the window (clock skew between processes).
_EXPIRY_SLACK_MS = 1000

Clock = Callable[[], float]


class LimitsUnavailable(Exception):
    """The limits' store (Redis) could not be reached or answered nonsense."""


class RateLimited(TunnelError):
    """The tunnel has had its requests for this window: 429 ``rate-limited``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(str(retry_after))
        #: Seconds to the window's end, for ``Retry-After``.
        self.retry_after = retry_after


@dataclass(frozen=True)
class Verdict:
    """Whether a counted thing may go ahead, and seconds until the window ends."""

    allowed: bool
    #: Whole seconds to the current window's end, at least 1 (for ``Retry-After``).
    retry_after: int


class Limits(Protocol):
    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        """Count one event for ``key`` in the current window; allowed while the
        window's count is at most ``limit``."""

    async def check(self, key: str, limit: int, window: float) -> Verdict:
        """Whether ``key`` is still under ``limit`` in the current window, counting nothing."""

    async def join(self, group: str, member: str, limit: int, ttl: float) -> bool:
        """Add ``member`` to ``group`` for ``ttl`` seconds unless the group already has
        ``limit`` live members; a member already in it always stays."""

    async def stay(self, group: str, member: str, ttl: float) -> None:
        """Extend ``member``'s life in ``group`` by ``ttl`` seconds from now."""

    async def leave(self, group: str, member: str) -> None:
        """Remove ``member`` from ``group``."""

    async def close(self) -> None:
        """Release this event loop's connections."""


def _window(now: float, window: float) -> tuple[int, int]:
    """The number of the window ``now`` is in, and whole seconds to its end (>= 1)."""
    number = math.floor(now / window)
    return number, max(1, math.ceil((number + 1) * window - now))


# ---------------------------------------------------------------------------
# In-process limits


class MemoryLimits:
    """The limits of a single server process; a restart forgets them."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window number, count)
        self._groups: dict[str, dict[str, float]] = {}  # group -> member -> expiry

    def _count(self, key: str, window: float, add: int) -> tuple[int, int]:
        number, retry_after = _window(self._clock(), window)
        current, count = self._counts.get(key, (number, 0))
        if current != number:
            count = 0
        count += add
        if count:
            self._counts[key] = (number, count)
        if add and len(self._counts) > 10_000:
            self._forget_old(number)
        return count, retry_after

    def _forget_old(self, number: int) -> None:
        for key, (current, _) in list(self._counts.items()):
            if current < number - _MEMORY_WINDOWS_KEPT:
                del self._counts[key]

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        count, retry_after = self._count(key, window, 1)
        return Verdict(count <= limit, retry_after)

    async def check(self, key: str, limit: int, window: float) -> Verdict:
        count, retry_after = self._count(key, window, 0)
        return Verdict(count < limit, retry_after)

    def _live(self, group: str) -> dict[str, float]:
        now = self._clock()
        members = self._groups.setdefault(group, {})
        for member, expires in list(members.items()):
            if expires <= now:
                del members[member]
        return members

    async def join(self, group: str, member: str, limit: int, ttl: float) -> bool:
        members = self._live(group)
        if member not in members and len(members) >= limit:
            return False
        members[member] = self._clock() + ttl
        return True

    async def stay(self, group: str, member: str, ttl: float) -> None:
        self._live(group)[member] = self._clock() + ttl

    async def leave(self, group: str, member: str) -> None:
        members = self._live(group)
        members.pop(member, None)
        if not members:
            del self._groups[group]

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# Redis limits

# KEYS[1] = the token's set; ARGV = now (s), member, limit, member's expiry (s), set ttl (ms).
_JOIN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[2])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisLimits:
    """Limits in Redis under ``<prefix>limit:`` and ``<prefix>tunnels:``, shared by every
    process."""

    def __init__(self, url: str, prefix: str, clock: Clock = time.time) -> None:
        self._prefix = prefix
        self._redis = PerLoopRedis(url)
        self._clock = clock

    def counter_key(self, key: str, number: int) -> str:
        return f"{self._prefix}limit:{key}:{number}"

    def group_key(self, group: str) -> str:
        return f"{self._prefix}tunnels:{group}"

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        number, retry_after = _window(self._clock(), window)
        counter = self.counter_key(key, number)
        expires_ms = math.ceil((number + 1) * window * 1000) + _EXPIRY_SLACK_MS
        try:
            async with self._redis.get().pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.pexpireat(counter, expires_ms)
                count, _ = await pipe.execute()
        except Exception as exc:  # redis-py raises a wide tree; callers need one type
            raise LimitsUnavailable(f"limits unavailable: {exc.__class__.__name__}") from exc
        return Verdict(int(count) <= limit, retry_after)

    async def check(self, key: str, limit: int, window: float) -> Verdict:
        number, retry_after = _window(self._clock(), window)
        try:
            count = await self._redis.get().get(self.counter_key(key, number))
        except Exception as exc:
            raise LimitsUnavailable(f"limits unavailable: {exc.__class__.__name__}") from exc
        return Verdict(int(count or 0) < limit, retry_after)

    async def join(self, group: str, member: str, limit: int, ttl: float) -> bool:
        now = self._clock()
        try:
            joined = await self._redis.get().eval(
                _JOIN, 1, self.group_key(group), now, member, limit, now + ttl, _ms(ttl)
            )
        except Exception as exc:
            raise LimitsUnavailable(f"limits unavailable: {exc.__class__.__name__}") from exc
        return bool(joined)

    async def stay(self, group: str, member: str, ttl: float) -> None:
        key = self.group_key(group)
        try:
            async with self._redis.get().pipeline(transaction=True) as pipe:
                pipe.zadd(key, {member: self._clock() + ttl})
                pipe.pexpire(key, _ms(ttl))
                await pipe.execute()
        except Exception as exc:
            raise LimitsUnavailable(f"limits unavailable: {exc.__class__.__name__}") from exc

    async def leave(self, group: str, member: str) -> None:
        try:
            await self._redis.get().zrem(self.group_key(group), member)
        except Exception as exc:
            raise LimitsUnavailable(f"limits unavailable: {exc.__class__.__name__}") from exc

    async def close(self) -> None:
        await self._redis.close()


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


_limits: Limits | None = None
_limits_config: tuple[str | None, str] | None = None


def get_limits() -> Limits:
    """Return the process's limits for the current settings."""
    global _limits, _limits_config
    config = (settings.REDIS_URL, settings.LUMINET_REDIS_PREFIX)
    if _limits is None or config != _limits_config:
        url, prefix = config
        _limits = RedisLimits(url, prefix) if url else MemoryLimits()
        _limits_config = config
    return _limits


# ---------------------------------------------------------------------------
# The three limits, as the edge and the tunnel session ask for them


def tunnel_rate_limit(token_override: int | None) -> int:
    """Requests per window for a tunnel of a token: its own limit, else the server's."""
    return settings.LUMINET_TUNNEL_RATE_LIMIT if token_override is None else token_override


async def request_verdict(subdomain: str, limit: int, limits: Limits | None = None) -> Verdict:
    """Count one request to the tunnel on ``subdomain`` against ``limit`` (> 0)."""
    limits = limits or get_limits()
    return await limits.hit(f"rate:{subdomain}", limit, settings.LUMINET_LIMIT_WINDOW_SECONDS)


async def rate_limited(route: Route, limits: Limits | None = None) -> Route | TunnelError:
    """``route`` if this request to it is within its ``rate_limit`` (> 0), else why not:
    RateLimited, or Unavailable when the limits cannot be reached (as the registry's
    failures are answered)."""
    try:
        verdict = await request_verdict(route.subdomain, route.rate_limit, limits)
    except LimitsUnavailable as exc:
        return Unavailable(str(exc))
    return route if verdict.allowed else RateLimited(verdict.retry_after)


async def auth_refusal(address: str, limits: Limits | None = None) -> Verdict | None:
    """The refusal of a tunnel handshake from ``address`` once it has had its
    LUMINET_AUTH_FAILURE_LIMIT failures this window; None while it may try.

    With the limits unreachable the handshake goes on (None): this is a filter in
    front of authentication, which then answers "server busy" itself if Redis is
    down, and a refused handshake would tell the client nothing better.
    """
    limit = settings.LUMINET_AUTH_FAILURE_LIMIT
    if not limit:
        return None
    limits = limits or get_limits()
    try:
        verdict = await limits.check(
            f"authfail:{address}", limit, settings.LUMINET_LIMIT_WINDOW_SECONDS
        )
    except LimitsUnavailable:
        return None
    return None if verdict.allowed else verdict


async def auth_failed(address: str, limits: Limits | None = None) -> None:
    """Count one failed tunnel authentication from ``address``."""
    limit = settings.LUMINET_AUTH_FAILURE_LIMIT
    if limit:
        limits = limits or get_limits()
        await limits.hit(f"authfail:{address}", limit, settings.LUMINET_LIMIT_WINDOW_SECONDS)
