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

import enum
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

from tunnels.edge.policy import PolicyError, TunnelPolicy, policy_from_json
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
class Connection:
    """One of a tunnel's WebSockets: its consumer's channel and the process holding it."""

    channel: str
    node: str = ""


@dataclass(frozen=True)
class Route:
    """Where a live subdomain's traffic goes, as the edge finds it once per request.

    ``channel`` is the connection this request goes to, picked at random from the
    tunnel's live ``connections`` (a process holding one of them uses its own,
    ``tunnels.relay.local_routes``). The per-tunnel policy and limit come with it,
    so every server process that a request lands on reads them from the same entry.
    """

    subdomain: str
    channel: str
    #: The token whose tunnel it is (usage, limits and allow lists are per token).
    token_id: int | None = field(default=None, compare=False)
    #: The tunnel's rules at the edge (``tunnels.edge.rules``); None without any, so
    #: a tunnel without rules costs one test per request.
    policy: TunnelPolicy | None = field(default=None, compare=False)
    #: Requests per limit window (``tunnels.limits``); 0 for none, so a tunnel without
    #: a limit costs one test per request.
    rate_limit: int = field(default=0, compare=False)
    #: Every live connection of the tunnel, by channel.
    connections: tuple[Connection, ...] = field(default=(), compare=False)

    def serves(self, channel: str) -> bool:
        """Whether ``channel`` is one of this tunnel's live connections."""
        return channel == self.channel or any(c.channel == channel for c in self.connections)


@dataclass(frozen=True)
class Member:
    """What a connection claiming a subdomain says about itself.

    Connections with the same non-empty ``tunnel`` id (the client's, for one
    tunnel) and token serve one tunnel together; ``slot`` tells a client's
    connections apart, so a reconnecting one replaces its own stale predecessor.
    With ``pool``, connections of different clients (same token) share the name.
    """

    node: str = ""
    tunnel: str = ""
    slot: int = 0
    pool: bool = False


#: A connection that says nothing about itself: alone on its subdomain.
ALONE = Member()


@dataclass(frozen=True)
class Claim:
    granted: bool
    #: The channels of the live connections this claim took the subdomain from.
    replaced: tuple[str, ...] = ()
    #: The channel of the same tunnel's connection in the same slot, whose place this
    #: claim took (a replacement after ``move``, or a reconnection).
    moved: tuple[str, ...] = ()


class Refreshed(enum.Enum):
    """What a heartbeat's refresh found; true only when the connection kept its place."""

    KEPT = 1
    #: The entry is not this connection's to keep (another token's, a hold, taken over).
    LOST = 0
    #: The same tunnel's newer connection holds this one's slot: this one moved (it
    #: may refresh before the message saying so reaches it).
    MOVED = 2

    def __bool__(self) -> bool:
        return self is Refreshed.KEPT


class Registry(Protocol):
    async def claim(
        self,
        subdomain: str,
        token_id: int,
        channel: str,
        take_over: bool = True,
        policy: TunnelPolicy | None = None,
        rate_limit: int = 0,
        member: Member = ALONE,
    ) -> Claim:
        """Make ``subdomain`` live on ``channel`` unless another token has it.

        A live tunnel of the same token is joined when ``member`` belongs to it
        (same tunnel id, or both pooled), replacing the connection in the same
        slot; otherwise it is taken over whole with ``take_over`` (the channels
        replaced are in the claim), and refused without. ``policy`` and
        ``rate_limit`` (requests per limit window, 0: none) go into the entry with
        it, atomically: no request finds the tunnel without its rules.
        """

    async def lookup(self, subdomain: str) -> Route | None:
        """Return the route to the live tunnel for ``subdomain``, if any."""

    async def refresh(
        self,
        subdomain: str,
        token_id: int,
        channel: str,
        policy: TunnelPolicy | None = None,
        rate_limit: int = 0,
        member: Member = ALONE,
    ) -> Refreshed:
        """Extend ``channel``'s connection in the entry, or restore it (with
        ``policy`` and ``rate_limit``) if the registry lost it.

        LOST if the entry is no longer this connection's to keep: another token's,
        a hold (also one ``channel`` released itself), or a tunnel this connection
        was replaced in; MOVED if its own tunnel's newer connection holds its slot.
        Compare-and-refresh, never a claim: a stale heartbeat must not take a
        subdomain from its new owner.
        """

    async def release(self, subdomain: str, channel: str, token_id: int, grace: float) -> bool:
        """Remove ``channel``'s connection; when it was the tunnel's last, the entry
        becomes a hold for ``token_id`` lasting ``grace`` s, and True is returned.

        A ``grace`` of 0 (the operator disconnected the tunnel) frees the name when
        the last connection goes, whatever grace that one is released with."""

    async def close(self) -> None:
        """Release this event loop's connections."""


def _joins(member: Member, tunnel: str, pool: bool) -> bool:
    """Whether a connection described by ``member`` belongs to a live tunnel."""
    return bool(member.tunnel and member.tunnel == tunnel) or (member.pool and pool)


# ---------------------------------------------------------------------------
# In-process registry


@dataclass
class _Link:
    node: str
    tunnel: str
    slot: int
    expires: float

    def same_slot(self, member: Member) -> bool:
        """Whether ``member`` is this link's successor (a client's reconnection)."""
        return bool(member.tunnel) and (self.tunnel, self.slot) == (member.tunnel, member.slot)


@dataclass
class _Entry:
    live: bool
    token_id: int
    #: When a hold ends (live entries expire connection by connection).
    expires: float
    policy: TunnelPolicy | None = None
    rate_limit: int = 0
    tunnel: str = ""
    pool: bool = False
    links: dict[str, _Link] = field(default_factory=dict)
    #: One connection was released with no grace: no hold after the last.
    free: bool = False


class MemoryRegistry:
    """The registry of a single server process; a restart empties it."""

    def __init__(self, clock=time.monotonic) -> None:
        self._entries: dict[str, _Entry] = {}
        self._clock = clock

    def _current(self, subdomain: str) -> _Entry | None:
        entry = self._entries.get(subdomain)
        if entry is None:
            return None
        now = self._clock()
        if entry.live:
            for channel, link in list(entry.links.items()):
                if link.expires <= now:
                    del entry.links[channel]
            if not entry.links:
                del self._entries[subdomain]
                return None
        elif entry.expires <= now:
            del self._entries[subdomain]
            return None
        return entry

    def _new(
        self,
        subdomain: str,
        token_id: int,
        channel: str,
        policy: TunnelPolicy | None,
        rate_limit: int,
        member: Member,
    ) -> None:
        entry = _Entry(True, token_id, 0.0, policy or None, rate_limit, member.tunnel, member.pool)
        self._link(entry, channel, member)
        self._entries[subdomain] = entry

    def _link(self, entry: _Entry, channel: str, member: Member) -> None:
        entry.links[channel] = _Link(
            member.node, member.tunnel, member.slot, self._clock() + live_ttl()
        )

    async def claim(
        self,
        subdomain: str,
        token_id: int,
        channel: str,
        take_over: bool = True,
        policy: TunnelPolicy | None = None,
        rate_limit: int = 0,
        member: Member = ALONE,
    ) -> Claim:
        entry = self._current(subdomain)
        if entry is not None and entry.token_id != token_id:
            return Claim(False)
        if entry is None or not entry.live:
            self._new(subdomain, token_id, channel, policy, rate_limit, member)
            return Claim(True)
        if channel in entry.links:
            self._link(entry, channel, member)
            return Claim(True)
        if _joins(member, entry.tunnel, entry.pool):
            replaced = tuple(other for other, link in entry.links.items() if link.same_slot(member))
            for other in replaced:
                del entry.links[other]
            self._link(entry, channel, member)
            return Claim(True, moved=replaced)
        if not take_over:
            return Claim(False)
        replaced = tuple(entry.links)
        self._new(subdomain, token_id, channel, policy, rate_limit, member)
        return Claim(True, replaced)

    async def lookup(self, subdomain: str) -> Route | None:
        entry = self._current(subdomain)
        if entry is None or not entry.live:
            return None
        connections = tuple(Connection(channel, link.node) for channel, link in entry.links.items())
        chosen = random.choice(connections).channel
        return Route(subdomain, chosen, entry.token_id, entry.policy, entry.rate_limit, connections)

    async def refresh(
        self,
        subdomain: str,
        token_id: int,
        channel: str,
        policy: TunnelPolicy | None = None,
        rate_limit: int = 0,
        member: Member = ALONE,
    ) -> Refreshed:
        entry = self._current(subdomain)
        if entry is None:
            self._new(subdomain, token_id, channel, policy, rate_limit, member)
            return Refreshed.KEPT
        if not entry.live or entry.token_id != token_id:
            return Refreshed.LOST
        if channel in entry.links:
            entry.links[channel].expires = self._clock() + live_ttl()
            return Refreshed.KEPT
        if not _joins(member, entry.tunnel, entry.pool):
            return Refreshed.LOST
        if any(link.same_slot(member) for link in entry.links.values()):
            return Refreshed.MOVED
        self._link(entry, channel, member)  # the registry lost it; the tunnel is back
        return Refreshed.KEPT

    async def release(self, subdomain: str, channel: str, token_id: int, grace: float) -> bool:
        entry = self._current(subdomain)
        if entry is None or not entry.live or channel not in entry.links:
            return False
        del entry.links[channel]
        if entry.links:
            entry.free = entry.free or grace == 0
            return False
        if entry.free or grace == 0:
            del self._entries[subdomain]
            return True
        self._entries[subdomain] = _Entry(
            False, token_id, self._clock() + grace, tunnel=entry.tunnel, pool=entry.pool
        )
        return True

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# Redis registry
#
# One key per subdomain, ``<prefix>tunnel:<subdomain>``, holding a JSON entry:
# live: {"live": true, "token", "since", "tunnel", "pool", "links": {channel:
# {"node", "tunnel", "slot", "exp"}}, "policy"?, "rate"?}; a hold: {"live": false, "token",
# "since"}. Each link expires on its own ("exp", Redis's clock in ms, refreshed by
# its heartbeat), so a dead process's connections drop out while the others keep
# the entry; the key itself expires when its last link does.

# Shared by the scripts: the time, and the entry's live links (expired ones dropped).
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local function live_links(entry)
  local links, count = {}, 0
  for channel, link in pairs(entry.links or {}) do
    if link.exp > now then links[channel] = link; count = count + 1 end
  end
  return links, count
end
local function save(entry, links)
  entry.links = links
  local longest = 0
  for _, link in pairs(links) do
    if link.exp - now > longest then longest = link.exp - now end
  end
  redis.call('SET', KEYS[1], cjson.encode(entry), 'PX', math.max(1, longest))
end
"""
# ARGV = ttl ms, token id, channel, node, tunnel, slot, pool (1/0), take over (1/0),
#        the entry to create (JSON, without links).
# Returns {granted, 'moved' or 'replaced', channels...}: the same tunnel's connection
# in the same slot moved, or another tunnel's connections taken over.
_CLAIM = (
    _PRELUDE
    + """
local token, channel = ARGV[2], ARGV[3]
local link = {node = ARGV[4], tunnel = ARGV[5], slot = tonumber(ARGV[6]), exp = now + ttl}
local tunnel, pool = ARGV[5], ARGV[7] == '1'
local current = redis.call('GET', KEYS[1])
local entry, links, count = nil, {}, 0
if current then
  entry = cjson.decode(current)
  if tostring(entry.token) ~= token then return {0} end
  if entry.live then links, count = live_links(entry) end
end
if count == 0 then
  save(cjson.decode(ARGV[9]), {[channel] = link})
  return {1}
end
if links[channel] then
  links[channel] = link
  save(entry, links)
  return {1}
end
local replaced = {1, 'moved'}
if (tunnel ~= '' and entry.tunnel == tunnel) or (pool and entry.pool) then
  if tunnel ~= '' then
    for other, old in pairs(links) do
      if old.tunnel == tunnel and old.slot == link.slot then
        links[other] = nil
        table.insert(replaced, other)
      end
    end
  end
  links[channel] = link
  save(entry, links)
  return replaced
end
if ARGV[8] ~= '1' then return {0} end
replaced = {1, 'replaced'}
for other, _ in pairs(links) do table.insert(replaced, other) end
local fresh = cjson.decode(ARGV[9])
save(fresh, {[channel] = link})
return replaced
"""
)
# ARGV = ttl ms, token id, channel, node, tunnel, slot, pool (1/0), the entry to
#        restore (JSON, without links) if the registry lost it.
# Returns a Refreshed value: 1 kept, 0 lost, 2 moved (its slot is its successor's).
_REFRESH = (
    _PRELUDE
    + """
local token, channel = ARGV[2], ARGV[3]
local link = {node = ARGV[4], tunnel = ARGV[5], slot = tonumber(ARGV[6]), exp = now + ttl}
local tunnel, pool = ARGV[5], ARGV[7] == '1'
local current = redis.call('GET', KEYS[1])
if not current then
  save(cjson.decode(ARGV[8]), {[channel] = link})
  return 1
end
local entry = cjson.decode(current)
if tostring(entry.token) ~= token or not entry.live then return 0 end
local links, count = live_links(entry)
if count == 0 then
  save(cjson.decode(ARGV[8]), {[channel] = link})
  return 1
end
if not links[channel] then
  local joins = (tunnel ~= '' and entry.tunnel == tunnel) or (pool and entry.pool)
  if not joins then return 0 end
  if tunnel ~= '' then
    for _, old in pairs(links) do
      if old.tunnel == tunnel and old.slot == link.slot then return 2 end
    end
  end
end
links[channel] = link
save(entry, links)
return 1
"""
)
# ARGV = ttl ms (unused), channel, hold value, grace in ms (0: the name is freed when
# the last connection goes). Returns 1 when the tunnel's last connection went.
_RELEASE = (
    _PRELUDE
    + """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local entry = cjson.decode(current)
if not entry.live then return 0 end
local links, count = live_links(entry)
if not links[ARGV[2]] then return 0 end
links[ARGV[2]] = nil
if count > 1 then
  if ARGV[4] == '0' then entry.free = true end
  save(entry, links)
  return 0
end
if entry.free or ARGV[4] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""
)


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
        self,
        subdomain: str,
        token_id: int,
        channel: str,
        take_over: bool = True,
        policy: TunnelPolicy | None = None,
        rate_limit: int = 0,
        member: Member = ALONE,
    ) -> Claim:
        granted, *rest = await self._eval(
            _CLAIM,
            self.key(subdomain),
            _ms(live_ttl()),
            token_id,
            channel,
            *_member_args(member),
            "1" if take_over else "0",
            _live_value(token_id, policy, rate_limit, member),
        )
        if not rest:
            return Claim(bool(granted))
        kind, channels = rest[0], tuple(other.decode() for other in rest[1:])
        if kind == b"moved":
            return Claim(bool(granted), moved=channels)
        return Claim(bool(granted), replaced=channels)

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
        if not entry.get("live"):
            return None
        # Redis's clock wrote the expiries; processes agree on the time (NTP), as the
        # limits' windows need too. An expired link is skipped until its key expires.
        now = time.time() * 1000
        links = entry.get("links")
        if not isinstance(links, dict):
            raise RegistryError(f"registry entry for {subdomain} has no connections")
        connections = tuple(
            Connection(channel, str(link.get("node", "")))
            for channel, link in links.items()
            if isinstance(link, dict) and link.get("exp", 0) > now
        )
        if not connections:
            return None
        policy = None
        if "policy" in entry:
            try:
                policy = policy_from_json(entry["policy"])
            except (PolicyError, TypeError) as exc:
                # Never serve a tunnel whose rules cannot be read: it would be open.
                raise RegistryError(f"registry entry for {subdomain} has a bad policy") from exc
        chosen = random.choice(connections).channel
        return Route(
            subdomain, chosen, entry.get("token"), policy, entry.get("rate", 0), connections
        )

    async def refresh(
        self,
        subdomain: str,
        token_id: int,
        channel: str,
        policy: TunnelPolicy | None = None,
        rate_limit: int = 0,
        member: Member = ALONE,
    ) -> Refreshed:
        restored = _live_value(token_id, policy, rate_limit, member)
        found = await self._eval(
            _REFRESH,
            self.key(subdomain),
            _ms(live_ttl()),
            token_id,
            channel,
            *_member_args(member),
            restored,
        )
        return Refreshed(int(found))

    async def release(self, subdomain: str, channel: str, token_id: int, grace: float) -> bool:
        hold = json.dumps({"live": False, "token": token_id, "since": time.time()})
        return bool(
            await self._eval(
                _RELEASE,
                self.key(subdomain),
                _ms(live_ttl()),
                channel,
                hold,
                _ms(grace) if grace > 0 else 0,
            )
        )

    async def close(self) -> None:
        await self._redis.close()


def _member_args(member: Member) -> tuple[str, str, int, str]:
    return member.node, member.tunnel, member.slot, "1" if member.pool else "0"


def _live_value(token_id: int, policy: TunnelPolicy | None, rate_limit: int, member: Member) -> str:
    """A live entry without its links (the scripts add them)."""
    entry: dict[str, object] = {
        "live": True,
        "token": token_id,
        "since": time.time(),
        "tunnel": member.tunnel,
        "pool": member.pool,
    }
    if rate_limit:
        entry["rate"] = rate_limit
    if policy:
        # As a JSON text of its own: lookups parse it once per process (policy_from_json).
        entry["policy"] = policy.to_json()
    return json.dumps(entry)


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
