"""The edge's meter on one tunnel-host request or WebSocket: it watches the ASGI
messages going by, and tells :mod:`tunnels.metrics` how the exchange ended, and
:mod:`tunnels.usage` what it cost the tunnel's token (``token_id``, which the
router sets once it has found the tunnel).

It sits in the router around everything a tunnel host gets (rules, limits, the
view or the public socket), so a refusal and an answer are counted the same way:
by the status line and ``Luminet-Error`` header that went out, never by asking
the code that produced them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from tunnels import metrics, usage

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The outcome of an exchange that ended before any answer went out (the public
#: client left, or the server stopped).
ABANDONED = "abandoned"
ANSWERED = "answered"


class Meter:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.started = time.monotonic()
        self.outcome = ABANDONED
        self.latency: float | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        #: The token whose tunnel this exchange is for, once the router found it.
        self.token_id: int | None = None

    def receive(self, receive: Receive) -> Receive:
        async def metered() -> Message:
            message = await receive()
            self.bytes_in += size(message)
            return message

        return metered

    def send(self, send: Send) -> Send:
        async def metered(message: Message) -> None:
            kind = message["type"]
            if kind in HEADS:
                self._head(message.get("headers") or ())
            else:
                self.bytes_out += size(message)
            await send(message)

        return metered

    def _head(self, headers: Any) -> None:
        self.latency = time.monotonic() - self.started
        self.outcome = ANSWERED
        for name, value in headers:
            if name.lower() == b"luminet-error":
                self.outcome = value.decode("latin-1")
                break

    def done(self) -> None:
        metrics.observe(self.kind, self.outcome, self.latency, self.bytes_in, self.bytes_out)
        if self.outcome in metrics.REFUSAL_CODES:
            usage.count_refusal(self.token_id)
        else:
            usage.count_exchange(self.token_id, self.bytes_in, self.bytes_out)


#: The messages that carry an answer's head: an HTTP response's, a WebSocket
#: accepted, or a WebSocket handshake answered with an HTTP status instead.
HEADS = frozenset({"http.response.start", "websocket.accept", "websocket.http.response.start"})


def size(message: Message) -> int:
    """Bytes of body or WebSocket message an ASGI message carries."""
    data = message.get("body") or message.get("bytes")
    if data:
        return len(data)
    text = message.get("text")
    return len(text.encode()) if text else 0
