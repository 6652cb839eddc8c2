"""How big body payloads travel between server processes on Redis.

channels-redis keeps each message in a sorted set and, so that a cancelled
``receive()`` loses nothing, the receiver copies the message into a backup set
and reads it back once it is handled: each byte of a message crosses between
the receiving process and Redis three times, and between the sender and Redis
once more. For a 2 MiB stretch of a download that is most of what the two
server processes and Redis spend. So a body payload above ``INLINE_LIMIT``
goes in a key of its own (``SET`` with the channel layer's expiry, taken back
with ``GETDEL``) and its channel-layer message carries only the key: still
Redis and the channel layer, one crossing each way.

Small payloads (most responses, every WebSocket fragment) stay inline, and so
does everything on the in-memory layer, where a message is never copied.
"""

from __future__ import annotations

import secrets
from typing import Any

from channels.layers import BaseChannelLayer
from django.conf import settings

from tunnels.redisclient import BODY_COMMAND_TIMEOUT, PerLoopRedis

from .redislayer import is_local

#: Payloads up to this size travel inside the channel-layer message.
INLINE_LIMIT = 128 * 1024


class PayloadLost(Exception):
    """A payload's key was gone (expired, or Redis lost it): its bytes are lost."""


class InlinePayloads:
    """One process: payloads always travel inside the message."""

    async def store(self, message: dict) -> dict:
        return message

    async def fetch(self, message: dict) -> dict:
        return message

    async def close(self) -> None:
        pass


class RedisPayloads:
    """Payloads above INLINE_LIMIT in ``<prefix>body:<random>`` keys."""

    def __init__(self, url: str, prefix: str, expiry: float) -> None:
        self._key_prefix = f"{prefix}body:"
        self._expiry_ms = max(1, int(expiry * 1000))
        self._redis = PerLoopRedis(url, BODY_COMMAND_TIMEOUT)

    async def store(self, message: dict) -> dict:
        """``message`` with a big ``data`` moved to a key of its own (a new dict)."""
        data = message.get("data")
        if not isinstance(data, bytes) or len(data) <= INLINE_LIMIT:
            return message
        key = self._key_prefix + secrets.token_hex(16)
        await self._redis.get().set(key, data, px=self._expiry_ms)
        stored = {name: value for name, value in message.items() if name != "data"}
        stored["data_key"] = key
        return stored

    async def fetch(self, message: dict) -> dict:
        """``message`` with its ``data`` back in place; raise PayloadLost if it is gone."""
        key = message.get("data_key")
        if key is None:
            return message
        if not isinstance(key, str) or not key.startswith(self._key_prefix):
            raise PayloadLost(f"not a payload key: {key!r}")
        data = await self._redis.get().getdel(key)
        if data is None:
            raise PayloadLost("body data expired before it was read")
        fetched = {name: value for name, value in message.items() if name != "data_key"}
        fetched["data"] = data
        return fetched

    async def close(self) -> None:
        await self._redis.close()


Payloads = InlinePayloads | RedisPayloads


async def prepare(payloads: Payloads, layer: BaseChannelLayer, channel: str, message: dict) -> dict:
    """``message`` as it is sent to ``channel``: a big payload goes aside only when the
    message crosses Redis; in this process (``redislayer``) it is never copied."""
    if is_local(layer, channel):
        return message
    return await payloads.store(message)


_payloads: Payloads | None = None
_payloads_config: tuple[str | None, str] | None = None


def get_payloads() -> Payloads:
    """Return the process's payload store for the current settings."""
    global _payloads, _payloads_config
    config = (settings.REDIS_URL, settings.LUMINET_REDIS_PREFIX)
    if _payloads is None or config != _payloads_config:
        url, prefix = config
        layers: dict[str, Any] = settings.CHANNEL_LAYERS
        expiry = layers["default"]["CONFIG"].get("expiry", 60)
        _payloads = RedisPayloads(url, prefix, expiry) if url else InlinePayloads()
        _payloads_config = config
    return _payloads
