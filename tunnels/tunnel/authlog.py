"""Failed tunnel authentications, logged without flooding the log.

A token brute force makes one failure per attempt (the audit measured 155 a
second from one address); one line each would bury everything else. The first
failure from an address is logged at once; later ones are counted, and the count
is logged at most once per ``WINDOW`` seconds per address. (Refusing such an
address outright is the rate limit's job, not the log's.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("tunnels.tunnel.session")

#: Seconds between two log lines about one address.
WINDOW = 60.0
#: Addresses remembered at once; beyond that the oldest are forgotten.
MAX_ADDRESSES = 10_000


@dataclass
class _Count:
    logged_at: float
    unlogged: int = 0


class FailedAuthLog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[str, _Count] = {}

    def failed(self, address: str) -> None:
        """Record one failed authentication from ``address`` (an IP, no port)."""
        now = self._clock()
        count = self._counts.get(address)
        if count is None:
            if len(self._counts) >= MAX_ADDRESSES:
                del self._counts[next(iter(self._counts))]
            self._counts[address] = _Count(logged_at=now)
            logger.warning("tunnel auth failed from %s", address)
            return
        count.unlogged += 1
        if now - count.logged_at >= WINDOW:
            logger.warning(
                "tunnel auth failed from %s %d more times in the last %.0f s",
                address,
                count.unlogged,
                now - count.logged_at,
            )
            count.logged_at, count.unlogged = now, 0


failed_auth_log = FailedAuthLog()
