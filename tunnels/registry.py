"""Live tunnels: which subdomain is served by which consumer channel.

Two implementations share one small interface: an in-process dictionary (the
embedded default, one server process) and Redis (several processes and
machines). A subdomain is in one of two states:

* live: a connected tunnel consumer owns it; public requests go to ``channel``;
* held: its tunnel disconnected less than a grace period ago; only the same
  token may claim it again, so a reconnecting client keeps its URL.

A claim by the same token may also take a *live* entry over (``take_over``): a
client reconnecting to the subdomain it held has given up on its old connection,
even if the server has not noticed yet (a half-open socket, or a process that
died). The old owner's channel is returned so it can be told to close. A fresh
client asking for a name never takes it from a live tunnel, even of its token.

Live entries carry a time-to-live that the owning consumer refreshes, so a
process that dies without cleaning up frees its subdomains shortly after.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from tunnels.redisclient import PerLoopRedis

logger = logging.getLogger(__name__)

#: A live entry survives this many heartbeats without a refresh, so a crashed
#: process's subdomains free within three of its tunnels' heartbeats.
TTL_HEARTBEATS = 3


def live_ttl() -> float:
    """Seconds a live entry survives without a refresh (LUMINET_HEARTBEAT_INTERVAL x 3)."""
    return settings.LUMINET_HEARTBEAT_INTERVAL * TTL_HEARTBEATS


class RegistryError(Exception):
    """The registry could not be reached or answered nonsense."""


@dataclass(frozen=True)
class Route:
    """Where a live subdomain's traffic goes, as the edge finds it once per request.

    Today one tunnel consumer's channel; the per-tunnel policy and several
    connections per tunnel get their place here, so every server process that a
    request lands on reads them from the same entry.
    """

    subdomain: str
    channel: str


@dataclass(frozen=True)
class Claim:
    granted: bool
    #: The channel of the live tunnel this claim took the subdomain from, if any.
    replaced: str | None = None


class Registry(Protocol):
    async def claim(
        self, subdomain: str, token_id: int, channel: str, take_over: bool = True
    ) -> Claim:
        """Make ``subdomain`` live on ``channel`` unless another token has it, or
        (without ``take_over``) another live tunnel of the same token."""

    async def lookup(self, subdomain: str) -> Route | None:
        """Return the route to the live tunnel for ``subdomain``, if any."""

    async def refresh(self, subdomain: str, token_id: int, channel: str) -> bool:
        """Extend ``channel``'s live entry, or restore it if the registry lost it.

        False if another entry stands there: another channel's, or a hold (also one
        ``channel`` released itself). Compare-and-refresh, never a claim: a stale
        heartbeat must not take a subdomain from its new owner.
        """

    async def release(self, subdomain: str, channel: str, token_id: int, grace: float) -> None:
        """Turn ``channel``'s live entry into a hold for ``token_id`` lasting ``grace`` s."""

    async def close(self) -> None:
        """Release this event loop's connections."""


# ---------------------------------------------------------------------------
# In-process registry


@dataclass
class _Entry:
    live: bool
    token_id: int
    channel: str
    expires: float


class MemoryRegistry:
    """The registry of a single server process; a restart empties it."""

    def __init__(self, clock=time.monotonic) -> None:
        self._entries: dict[str, _Entry] = {}
        self._clock = clock

    def _current(self, subdomain: str) -> _Entry | None:
        entry = self._entries.get(subdomain)
        if entry is not None and entry.expires <= self._clock():
            del self._entries[subdomain]
            return None
        return entry

    async def claim(
        self, subdomain: str, token_id: int, channel: str, take_over: bool = True
    ) -> Claim:
        entry = self._current(subdomain)
        if entry is not None and entry.token_id != token_id:
            return Claim(False)
        if entry is not None and entry.live and entry.channel != channel and not take_over:
            return Claim(False)
        self._entries[subdomain] = _Entry(True, token_id, channel, self._clock() + live_ttl())
        if entry is not None and entry.live and entry.channel != channel:
            return Claim(True, replaced=entry.channel)
        return Claim(True)

    async def lookup(self, subdomain: str) -> Route | None:
        entry = self._current(subdomain)
        return Route(subdomain, entry.channel) if entry is not None and entry.live else None

    async def refresh(self, subdomain: str, token_id: int, channel: str) -> bool:
        entry = self._current(subdomain)
        if entry is None:
            self._entries[subdomain] = _Entry(True, token_id, channel, self._clock() + live_ttl())
            return True
        if not entry.live or entry.channel != channel:
            return False
        entry.expires = self._clock() + live_ttl()
        return True

    async def release(self, subdomain: str, channel: str, token_id: int, grace: float) -> None:
        entry = self._current(subdomain)
        if entry is not None and entry.live and entry.channel == channel:
            self._entries[subdomain] = _Entry(False, token_id, channel, self._clock() + grace)

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# Redis registry

# KEYS[1] = tunnel key; ARGV = new value, token id, ttl in ms, new channel, take over (1/0).
# Returns {granted, channel of the live tunnel replaced or ""}.
_CLAIM = """
local replaced = ''
local current = redis.call('GET', KEYS[1])
if current then
  local entry = cjson.decode(current)
  if tostring(entry.token) ~= ARGV[2] then return {0, ''} end
  if entry.live and entry.channel ~= ARGV[4] then
    if ARGV[5] ~= '1' then return {0, ''} end
    replaced = entry.channel
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {1, replaced}
"""
# KEYS[1] = tunnel key; ARGV = channel, ttl in ms, value to restore a lost entry with.
_REFRESH = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
  return 1
end
local entry = cjson.decode(current)
if not entry.live or entry.channel ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# KEYS[1] = tunnel key; ARGV = channel, hold value, grace in ms.
_RELEASE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local entry = cjson.decode(current)
if not entry.live or entry.channel ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class RedisRegistry:
    """Live tunnels in Redis under ``<prefix>tunnel:<subdomain>``, shared by every process."""

    def __init__(self, url: str, prefix: str) -> None:
        self._prefix = prefix
        self._redis = PerLoopRedis(url)

    def key(self, subdomain: str) -> str:
        return f"{self._prefix}tunnel:{subdomain}"

    async def _eval(self, script: str, key: str, *args: object):
        try:
            return await self._redis.get().eval(script, 1, key, *args)
        except Exception as exc:  # redis-py raises a wide tree; callers need one type
            raise RegistryError(f"registry unavailable: {exc.__class__.__name__}") from exc

    async def claim(
        self, subdomain: str, token_id: int, channel: str, take_over: bool = True
    ) -> Claim:
        value = _live_value(token_id, channel)
        granted, replaced = await self._eval(
            _CLAIM,
            self.key(subdomain),
            value,
            token_id,
            _ms(live_ttl()),
            channel,
            "1" if take_over else "0",
        )
        return Claim(bool(granted), replaced.decode() if replaced else None)

    async def lookup(self, subdomain: str) -> Route | None:
        try:
            raw = await self._redis.get().get(self.key(subdomain))
        except Exception as exc:
            raise RegistryError(f"registry unavailable: {exc.__class__.__name__}") from exc
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
        except ValueError as exc:
            raise RegistryError("registry entry is not JSON") from exc
        return Route(subdomain, entry["channel"]) if entry.get("live") else None

    async def refresh(self, subdomain: str, token_id: int, channel: str) -> bool:
        restored = _live_value(token_id, channel)
        return bool(
            await self._eval(_REFRESH, self.key(subdomain), channel, _ms(live_ttl()), restored)
        )

    async def release(self, subdomain: str, channel: str, token_id: int, grace: float) -> None:
        value = json.dumps(
            {"live": False, "token": token_id, "channel": channel, "since": time.time()}
        )
        await self._eval(_RELEASE, self.key(subdomain), channel, value, _ms(grace))

    async def close(self) -> None:
        await self._redis.close()


def _live_value(token_id: int, channel: str) -> str:
    return json.dumps({"live": True, "token": token_id, "channel": channel, "since": time.time()})


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


_registry: Registry | None = None
_registry_config: tuple[str | None, str] | None = None


def get_registry() -> Registry:
    """Return the process's registry for the current settings."""
    global _registry, _registry_config
    config = (settings.REDIS_URL, settings.LUMINET_REDIS_PREFIX)
    if _registry is None or config != _registry_config:
        url, prefix = config
        _registry = RedisRegistry(url, prefix) if url else MemoryRegistry()
        _registry_config = config
    return _registry
