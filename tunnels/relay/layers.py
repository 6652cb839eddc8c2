"""The embedded default's channel layer: channels' in-memory layer, made cheaper.

``InMemoryChannelLayer`` deep-copies every message and, on every ``receive()``,
walks every channel in the process looking for expired messages: with 50
requests in flight that is a few hundred queue checks per request, and the deep
copy of a request head costs more than sending it. Messages here are plain
dicts of bytes, strings and lists that nobody changes once sent (see ``relay``),
so a shallow copy keeps sender and receiver apart, and the sweep for expired
messages runs at most once a second. Production uses channels-redis instead.
"""

from __future__ import annotations

import asyncio
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

#: Seconds between sweeps for expired messages (they expire after ``expiry``, 60 s).
SWEEP_INTERVAL = 1.0


class InProcessChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._next_sweep = 0.0

    async def send(self, channel: str, message: dict) -> None:
        # InMemoryChannelLayer.send, with a shallow copy for its deepcopy.
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        queue = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
        try:
            queue.put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        super()._clean_expired()
