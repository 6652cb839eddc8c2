"""Stopping a server process without losing a request (SIGTERM, a rolling restart).

When the process is told to stop, :func:`drain` runs before daphne ends its
applications (``tunnelsite.server``):

1. The process is *draining*: ``/health`` answers 503, so the proxy in front
   (Caddy's health check) stops sending it requests, and new tunnel connections
   are refused with ``server-draining``, so clients dial another process.
2. Every tunnel connection this process holds is told to ``move``: its client
   opens a replacement, which reaches another process and takes this one's place
   in the registry; this one then closes once its streams have ended.
3. It waits, up to ``LUMINET_DRAIN_SECONDS``, until no tunnel connection is left
   here, no public HTTP request is in flight, and none has arrived for
   ``QUIET_SECONDS`` (the proxy has noticed), then lets daphne stop.

A process killed (SIGKILL) drains nothing: its connections leave the registry
within the heartbeat bound, and clients dial them again elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from channels.layers import get_channel_layer

from tunnels.messages import TunnelMove, to_layer

logger = logging.getLogger(__name__)

#: Seconds without a new public request before a drained process stops: the proxy
#: in front has taken it out (Caddy checks health every 2 s).
QUIET_SECONDS = 2.5
#: Seconds between two looks at what is left to drain.
POLL_SECONDS = 0.05


class Draining:
    """Whether this process is stopping, and what it is still doing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.active = False
        #: Public HTTP requests this process is answering now.
        self.in_flight = 0
        self.last_arrival = clock()
        #: The tunnel connections (consumer channels) this process holds.
        self.sessions: set[str] = set()

    def request_started(self) -> None:
        self.in_flight += 1
        self.last_arrival = self._clock()

    def request_ended(self) -> None:
        self.in_flight -= 1

    def idle(self) -> bool:
        """Nothing left here: no connection, no request, and none for a while."""
        quiet = self._clock() - self.last_arrival >= QUIET_SECONDS
        return not self.sessions and not self.in_flight and quiet


state = Draining()


class Channels(Protocol):
    async def send(self, channel: str, message: dict) -> None: ...


async def drain(seconds: float, layer: Channels | None = None) -> None:
    """Drain this process (see the module's text), for at most ``seconds``."""
    state.active = True
    layer = layer or get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is always configured"
    started = time.monotonic()
    sessions = len(state.sessions)
    logger.info("draining: %d tunnel connections asked to move, %.0f s at most", sessions, seconds)
    for channel in list(state.sessions):
        with contextlib.suppress(Exception):  # full or gone: it closes at the deadline
            await layer.send(channel, to_layer(TunnelMove(seconds)))
    deadline = started + seconds
    while not state.idle() and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
    left = f"{len(state.sessions)} connections and {state.in_flight} requests left"
    logger.info("drained in %.1f s (%s)", time.monotonic() - started, left)
