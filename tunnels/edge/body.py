"""The public request's body, read from ASGI ``receive()`` as the tunnel sends it on.

Django's ``ASGIHandler`` copies a whole body into a temporary file before the view
runs, spilling to disk past 2.5 MB with a thread hop per chunk. Tunnel hosts skip
that copy: the view reads the body from here, straight from the server's
``receive()``, and sends it on as it goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from django.core.exceptions import RequestAborted

Receive = Callable[[], Awaitable[dict]]


class RequestBody:
    def __init__(self, receive: Receive, first: dict) -> None:
        """``first`` is the first ``http.request`` message, already received."""
        self._receive = receive
        self._buffer = bytearray(first.get("body", b""))
        self._more = bool(first.get("more_body", False))
        #: Set once the whole body has been received, or the public client left.
        self.done = asyncio.Event()
        self.client_gone = False
        if not self._more:
            self.done.set()

    async def read(self, size: int) -> tuple[bytes, bool]:
        """Up to ``size`` bytes as soon as any are in, and whether the body ends there.

        Never waits to fill ``size``: a caller sending its body slowly has each part
        passed on as it arrives. Raises RequestAborted if the public client goes away
        first.
        """
        while not self._buffer and self._more:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._more = False
                self.client_gone = True
                self.done.set()
                raise RequestAborted
            self._buffer += message.get("body", b"")
            self._more = bool(message.get("more_body", False))
            if not self._more:
                self.done.set()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data, not (self._more or self._buffer)
