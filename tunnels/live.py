"""Live tunnels as the operator sees them, and disconnecting one, from any process.

Each tunnel session publishes what it knows about itself (token, client address,
since when, requests and bytes so far, rules in force) when it opens and at every
heartbeat (``LUMINET_HEARTBEAT_INTERVAL``), and withdraws it when it ends. The
entries live in Redis under ``<prefix>live:<subdomain>`` when ``REDIS_URL`` is
set, so every process lists every tunnel, and in this process's memory
otherwise; like registry entries they expire after three missed heartbeats, so a
crashed process's tunnels drop off the list. The counters are therefore as of
the tunnel's last heartbeat: publishing per request would cost a Redis write
each.

Disconnecting sends :class:`~tunnels.messages.TunnelDisconnect` to the tunnel's
channel (found in the registry), whichever process holds it; its session closes
with ``CloseCode.DISCONNECTED`` and the client exits, saying the server's
operator disconnected it, instead of reconnecting.

Plain functions for the admin and the admin API: :func:`list_live` and
:func:`disconnect` (async; wrap them in ``async_to_sync`` from sync views). While
Redis is unreachable both raise :class:`LiveUnavailable`, which the admin and the
API answer with a 503 saying so: the rest of the admin, on the database, works on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace

from channels.layers import get_channel_layer
from django.conf import settings

from tunnels.messages import TunnelDisconnect, to_layer
from tunnels.outages import is_outage
from tunnels.redisclient import PerLoopRedis
from tunnels.registry import RegistryError, get_registry, live_ttl

logger = logging.getLogger(__name__)

#: Entries read per Redis SCAN step.
SCAN_COUNT = 500


class LiveUnavailable(Exception):
    """Redis cannot be reached: no list of live tunnels, and no disconnect, for now."""


@dataclass(frozen=True)
class LiveTunnel:
    subdomain: str
    token_id: int
    token_name: str
    #: The client's address (``host:port``) as the server saw it.
    client: str
    #: When the tunnel opened (seconds since the epoch).
    since: float
    requests: int
    bytes_in: int
    bytes_out: int
    #: The tunnel's rules by name (``TunnelPolicy.describe()``); never a credential.
    rules: tuple[str, ...] = ()
    #: The channel of the tunnel's consumer: a withdrawal by a stale session must
    #: not remove its successor's entry.
    channel: str = ""
    #: The server process holding the connection (``LUMINET_NODE``).
    node: str = ""
    #: How many connections serve the tunnel (each publishes its own entry; the
    #: list adds them up).
    connections: int = 1


class _MemoryStore:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[LiveTunnel, float]] = {}

    async def publish(self, tunnel: LiveTunnel) -> None:
        key = (tunnel.subdomain, tunnel.channel)
        self._entries[key] = (tunnel, time.monotonic() + live_ttl())

    async def withdraw(self, subdomain: str, channel: str) -> None:
        self._entries.pop((subdomain, channel), None)

    async def alive(self, subdomain: str, channel: str) -> bool:
        entry = self._entries.get((subdomain, channel))
        return entry is not None and entry[1] > time.monotonic()

    async def all(self) -> list[LiveTunnel]:
        now = time.monotonic()
        for name, (_, expires) in list(self._entries.items()):
            if expires <= now:
                del self._entries[name]
        return [tunnel for tunnel, _ in self._entries.values()]


class _RedisStore:
    def __init__(self, url: str, prefix: str) -> None:
        self._prefix = f"{prefix}live:"
        self._redis = PerLoopRedis(url)

    def key(self, subdomain: str, channel: str) -> str:
        return f"{self._prefix}{subdomain}:{channel}"

    async def publish(self, tunnel: LiveTunnel) -> None:
        value = json.dumps(asdict(tunnel))
        key = self.key(tunnel.subdomain, tunnel.channel)
        await self._redis.get().set(key, value, px=max(1, int(live_ttl() * 1000)))

    async def withdraw(self, subdomain: str, channel: str) -> None:
        await self._redis.get().delete(self.key(subdomain, channel))

    async def alive(self, subdomain: str, channel: str) -> bool:
        return bool(await self._redis.get().exists(self.key(subdomain, channel)))

    async def all(self) -> list[LiveTunnel]:
        redis = self._redis.get()
        keys = [key async for key in redis.scan_iter(match=f"{self._prefix}*", count=SCAN_COUNT)]
        if not keys:
            return []
        tunnels = []
        for raw in await redis.mget(keys):
            if raw is None:
                continue  # expired between the scan and the read
            fields = json.loads(raw)
            fields["rules"] = tuple(fields.get("rules") or ())
            tunnels.append(LiveTunnel(**fields))
        return tunnels


_store: _MemoryStore | _RedisStore | None = None
_store_config: tuple[str | None, str] | None = None


def _current() -> _MemoryStore | _RedisStore:
    global _store, _store_config
    config = (settings.REDIS_URL, settings.LUMINET_REDIS_PREFIX)
    if _store is None or config != _store_config:
        url, prefix = config
        _store = _RedisStore(url, prefix) if url else _MemoryStore()
        _store_config = config
    return _store


async def publish(tunnel: LiveTunnel) -> None:
    """Record (or refresh) a live tunnel's entry; the session calls it at every heartbeat."""
    try:
        await _current().publish(tunnel)
    except Exception as exc:  # redis-py's wide tree: the list is for people, the tunnel goes on
        logger.warning("live list: cannot publish %s: %r", tunnel.subdomain, exc)


async def withdraw(subdomain: str, channel: str) -> None:
    """Drop ``channel``'s entry for ``subdomain`` (a newer session's entry stays)."""
    try:
        await _current().withdraw(subdomain, channel)
    except Exception as exc:  # as in publish(); the entry then expires on its own
        logger.warning("live list: cannot withdraw %s: %r", subdomain, exc)


async def is_live(subdomain: str, channel: str) -> bool:
    """Whether the connection on ``channel`` still serves ``subdomain``'s streams: its
    session publishes its entry at every heartbeat until it ends, also once another
    connection took its place in the registry (it finishes its streams). Raises
    what Redis raises."""
    return await _current().alive(subdomain, channel)


async def list_live() -> list[LiveTunnel]:
    """Every live tunnel of every process, by subdomain: a tunnel's connections added
    up (requests, bytes), with the processes holding them in ``node``; LiveUnavailable
    without Redis."""
    try:
        entries = await _current().all()
    except Exception as exc:
        if is_outage(exc):
            raise LiveUnavailable(f"Redis unreachable: {exc.__class__.__name__}") from exc
        raise
    by_subdomain: dict[str, list[LiveTunnel]] = {}
    for entry in entries:
        by_subdomain.setdefault(entry.subdomain, []).append(entry)
    return [_combined(group) for _, group in sorted(by_subdomain.items())]


def _combined(entries: list[LiveTunnel]) -> LiveTunnel:
    if len(entries) == 1:
        return entries[0]
    entries.sort(key=lambda entry: entry.since)
    first = entries[0]
    return replace(
        first,
        client=", ".join(dict.fromkeys(entry.client for entry in entries)),
        requests=sum(entry.requests for entry in entries),
        bytes_in=sum(entry.bytes_in for entry in entries),
        bytes_out=sum(entry.bytes_out for entry in entries),
        node=", ".join(sorted({entry.node for entry in entries})),
        connections=len(entries),
    )


async def disconnect(subdomain: str) -> bool:
    """Close every connection of ``subdomain``'s tunnel, whichever processes hold them;
    False if none is live, LiveUnavailable without Redis."""
    try:
        route = await get_registry().lookup(subdomain)
    except RegistryError as exc:
        raise LiveUnavailable(str(exc)) from exc
    if route is None:
        return False
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is always configured"
    try:
        for channel in {route.channel, *(c.channel for c in route.connections)}:
            await layer.send(channel, to_layer(TunnelDisconnect()))
    except Exception as exc:
        if is_outage(exc):
            raise LiveUnavailable(f"Redis unreachable: {exc.__class__.__name__}") from exc
        raise
    return True
