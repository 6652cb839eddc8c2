"""How many refusal notices a tunnel is sent: at most so many per second.

A flood of refused requests (a scanner, a wrong password in a loop) must not
become a flood on the channel layer and the tunnel. Pure, with a clock seam.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from client.protocol import REFUSALS_PER_SECOND

#: Tunnels remembered at most; past it the window starts afresh for all.
MAX_TUNNELS = 10_000


class NoticeLimit:
    """Says whether one more notice may go to a tunnel in the current second."""

    def __init__(
        self, per_second: int = REFUSALS_PER_SECOND, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self._clock = clock
        self._second = -1
        self._sent: dict[str, int] = {}

    def allow(self, tunnel: str) -> bool:
        second = int(self._clock())
        if second != self._second or len(self._sent) > MAX_TUNNELS:
            self._second, self._sent = second, {}
        sent = self._sent.get(tunnel, 0)
        if sent >= self.per_second:
            return False
        self._sent[tunnel] = sent + 1
        return True
