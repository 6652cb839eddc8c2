"""One redis.asyncio client per event loop, for the registry and the payload store."""

from __future__ import annotations

import asyncio
from typing import Any

#: Seconds to connect to Redis, and to wait for one command's answer: the registry's,
#: the limits' and the live list's commands are small, and a public request waits on
#: them, so a Redis that hangs (or a network that drops packets) costs it this much
#: before its 503, not more.
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 2.0
#: The same for commands that carry request and response bodies (``relay.payloads``).
BODY_COMMAND_TIMEOUT = 10.0


class PerLoopRedis:
    """redis.asyncio connections belong to the loop that made them: one client each."""

    def __init__(self, url: str, command_timeout: float = COMMAND_TIMEOUT) -> None:
        self._url = url
        self._command_timeout = command_timeout
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}

    def get(self) -> Any:
        import redis.asyncio as aioredis  # only deployments with REDIS_URL need it

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # Bounded waits: an unreachable Redis must give a fast 503, never a hang.
            client = aioredis.Redis.from_url(
                self._url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=self._command_timeout,
            )
            self._clients[loop] = client
        return client

    async def close(self) -> None:
        """Close the current loop's client."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
