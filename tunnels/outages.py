"""Redis outages: which failures are one, and a tunnel that waits one out.

A client's tunnel WebSocket does not pass through Redis: only the channel layer that
brings it public requests, and the registry entry that routes them to it, do. So
when Redis restarts (even empty) or is unreachable for a while, a live tunnel keeps
its WebSocket and waits: its channel-layer receive is tried again until Redis
answers (:func:`receive_through_outages`), and its next heartbeat writes its
registry entry back (``Registry.refresh`` restores a lost entry), so it serves again
within one ``LUMINET_HEARTBEAT_INTERVAL`` of Redis's return, without the client
reconnecting. Meanwhile public requests get a fast 503 ``unavailable``: the
registry's client gives up after one reconnection (``tunnels.redisclient``).

Public requests and public WebSockets are not waited out: their messages travel
through Redis, and those sent during the outage are lost, so they fail as before.

While Redis is down each waiting tunnel tries it twice a second
(``redislayer.PUMP_RETRY_DELAY``), one try at a time per process (channels-redis
lets one receive at a time talk to Redis); messages between a public request and
a tunnel in the same process need no Redis and go on flowing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds between two failed receives at least, while the channel layer is unreachable.
RETRY_PAUSE = 0.5
#: Seconds between two probes of an unreachable Redis (a PING).
PROBE_INTERVAL = 0.5
#: Seconds between two log lines saying the channel layer is unreachable.
LOG_EVERY = 30.0

Receive = Callable[[], Awaitable[dict[str, Any]]]
Probe = Callable[[], Awaitable[object]]


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis cannot be reached (down, restarting, loading its data,
    timing out), as opposed to a bug, which must not be retried forever."""
    from redis import exceptions  # only deployments with REDIS_URL have outages

    return isinstance(exc, (exceptions.ConnectionError, exceptions.TimeoutError, OSError))


class ThrottledWarning:
    """One warning for a failure that every tunnel of a process meets at once (Redis
    gone): logged at most once every ``every`` seconds, however many tunnels meet it,
    each line saying how many it stands for."""

    def __init__(
        self, message: str, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._message = message
        self._every = every
        self._clock = clock
        self._logged: float | None = None
        self._unsaid = 0

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        self._unsaid += 1
        if self._logged is None or now - self._logged >= self._every:
            self._logged = now
            logger.warning(
                "%s (%r; %d in all since the last line)", self._message, exc, self._unsaid
            )
            self._unsaid = 0


_outage = ThrottledWarning("channel layer unreachable; tunnels wait for it")
#: A tunnel whose heartbeat cannot write its registry entry keeps serving (requests
#: entering its own process need no Redis) and writes it back at a later heartbeat.
registry_refresh_failed = ThrottledWarning(
    "registry refresh failed; tunnels keep serving and write their entries back once Redis answers"
)


async def receive_through_outages(receive: Receive, pause: float = RETRY_PAUSE) -> dict[str, Any]:
    """``receive()``, tried again while Redis is unreachable, at most every ``pause`` s.

    The layer paces its own retries (``LocalDeliveryLayer`` waits before its next
    try at Redis, and hands over this process's own messages meanwhile); the pause
    only stops a busy loop on a layer that fails at once every time.
    """
    failed_at: float | None = None
    while True:
        try:
            return await receive()
        except Exception as exc:
            if not is_outage(exc):
                raise
            _outage.failed(exc)
            now = time.monotonic()
            if failed_at is not None and now - failed_at < pause:
                await asyncio.sleep(pause - (now - failed_at))
            failed_at = time.monotonic()


class RedisGate:
    """Whether Redis answers, as one process's receivers see it.

    After a failure (:meth:`down`), every receiver that wants Redis again waits in
    :meth:`wait` while one task probes it every PROBE_INTERVAL seconds, so a
    process with thousands of tunnels tries an unreachable Redis twice a second,
    not thousands of times; the probe ends as soon as Redis answers.
    """

    def __init__(self, probe: Probe, interval: float = PROBE_INTERVAL) -> None:
        self._probe = probe
        self._interval = interval
        self._up = asyncio.Event()
        self._up.set()
        self._prober: asyncio.Task[None] | None = None

    def down(self) -> None:
        self._up.clear()

    async def wait(self) -> None:
        """Return at once while Redis is up; else once the probe sees it answer."""
        if self._up.is_set():
            return
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe_until_up())
        await self._up.wait()

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._probe()
            except Exception as exc:
                if is_outage(exc):
                    continue
                # Not an outage: let the receivers meet it themselves.
                logger.error("probing Redis failed: %r", exc)
            self._up.set()
            return
