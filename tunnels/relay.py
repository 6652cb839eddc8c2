"""One public request's trip through the channel layer to a tunnel and back.

The view calls :func:`open_stream`; the tunnel consumer on the other end (maybe in
another process) turns these channel-layer messages into wire messages. Both
directions are windowed: at most ``WINDOW_CHUNKS`` body chunks of one stream wait
in a channel at any time, so a slow reader never fills a channel-layer queue and
never makes a process hold more than a few chunks of a body.

Messages to the tunnel consumer's channel (``reply`` names the stream)::

    tunnel.open    reply, method, path, headers, body
    tunnel.data    reply, data, end, chunks
    tunnel.window  reply, chunks      (the view consumed response chunks)
    tunnel.cancel  reply              (the public side went away)

Messages back to the stream's reply channel::

    stream.response  status, headers, body [, data, end, chunks]
    stream.data      data, end, chunks
    stream.window    chunks           (the client consumed request chunks)
    stream.error     message          (local failure, or the tunnel closed)

``chunks`` is how many wire chunks (each at most ``CHUNK_SIZE``) a ``data``
carries: one channel-layer message may carry several, since each message costs
a round trip on Redis. Windows are counted in wire chunks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.core.exceptions import RequestAborted

from client.protocol import CHUNK_SIZE, CREDIT_BATCH, WINDOW_CHUNKS, Headers

from .payloads import get_payloads
from .receiving import is_stop, stop_receiving
from .registry import RegistryError, get_registry

logger = logging.getLogger(__name__)

#: Seconds between checks that the tunnel behind a waiting stream still exists
#: (covers a server process that died without telling its streams).
LIVENESS_INTERVAL = 5.0


class TunnelError(Exception):
    """Base of everything that can go wrong between the view and the local server.

    TunnelError
     +-- TunnelNotFound     no live tunnel for the subdomain         -> 502
     +-- TunnelBusy         the tunnel's queue is full               -> 503
     +-- TunnelTimeout      no response head in time                 -> 504
     +-- LocalServerError   the client could not reach the local app -> 502
     +-- TunnelClosed       the tunnel went away mid-stream           -> 502 / abort
    """


class TunnelNotFound(TunnelError):
    pass


class TunnelBusy(TunnelError):
    pass


class TunnelTimeout(TunnelError):
    pass


class LocalServerError(TunnelError):
    pass


class TunnelClosed(TunnelError):
    pass


@dataclass(frozen=True)
class RequestHead:
    method: str
    path: str
    headers: Headers
    body: bool


@dataclass(frozen=True)
class ResponseHead:
    status: int
    headers: Headers
    body: bool


BodyReader = Callable[[int], Awaitable[tuple[bytes, bool]]]
"""Reads up to n bytes of the request body as soon as any are in; True at its end."""


class Stream:
    """The view's end of one stream: sends the request, receives the response."""

    def __init__(self, subdomain: str, tunnel_channel: str, reply_channel: str) -> None:
        self.subdomain = subdomain
        self._layer = get_channel_layer()
        self._payloads = get_payloads()
        self._tunnel = tunnel_channel
        self._reply = reply_channel
        self._inbox: asyncio.Queue[dict] = asyncio.Queue()
        self._credit = WINDOW_CHUNKS
        self._credit_changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._receiver: asyncio.Task | None = None
        self._liveness: asyncio.TimerHandle | None = None
        self._finished = False
        self._first_data: dict | None = None
        self._last_progress = asyncio.get_running_loop().time()

    async def _send(self, message: dict) -> None:
        message["reply"] = self._reply
        try:
            message = await self._payloads.store(message)
        except Exception as exc:  # Redis failing
            raise TunnelClosed(f"cannot pass the body on: {exc.__class__.__name__}") from exc
        try:
            await self._layer.send(self._tunnel, message)
        except ChannelFull as exc:
            raise TunnelBusy("tunnel queue full") from exc

    async def _receive_loop(self) -> None:
        """Sort the reply channel's messages: credit here, everything else to the inbox.

        Ends by itself after the stream's last message (cancelling a task waiting
        in the channel layer cost more than 5 % of a small request's CPU).
        """
        while True:
            message = await self._layer.receive(self._reply)
            if is_stop(message):
                return
            try:
                message = await self._payloads.fetch(message)
            except Exception as exc:  # PayloadLost, or Redis failing: never a short body
                logger.error("stream %s: response body lost: %r", self._reply, exc)
                self._inbox.put_nowait({"type": "stream.error", "message": "response body lost"})
                return
            if message["type"] == "stream.window":
                self._credit += message["chunks"]
                self._credit_changed.set()
                self._last_progress = asyncio.get_running_loop().time()
                continue
            self._inbox.put_nowait(message)
            if _is_last(message):
                return

    def _watch_liveness(self) -> None:
        # Run by a timer, not a task from the start: most streams end before the
        # first check is due.
        self._tasks.append(asyncio.create_task(self._liveness_loop()))

    async def _liveness_loop(self) -> None:
        await tunnel_gone(self.subdomain, self._tunnel, first_check=0)
        self._inbox.put_nowait({"type": "stream.error", "message": "tunnel closed"})

    async def _send_body(self, read: BodyReader) -> None:
        while True:
            while self._credit <= 0:
                self._credit_changed.clear()
                await self._credit_changed.wait()
            # All the credit at once: one channel-layer message for many chunks.
            data, end = await read(self._credit * CHUNK_SIZE)
            chunks = max(1, -(-len(data) // CHUNK_SIZE))
            self._credit -= chunks
            await self._send({"type": "tunnel.data", "data": data, "end": end, "chunks": chunks})
            if end:
                return

    async def start(self, head: RequestHead, read: BodyReader) -> None:
        logger.debug("stream %s: opening on %s", self._reply, self._tunnel)
        self._receiver = asyncio.create_task(self._receive_loop())
        self._liveness = asyncio.get_running_loop().call_later(
            LIVENESS_INTERVAL, self._watch_liveness
        )
        await self._send(
            {
                "type": "tunnel.open",
                "method": head.method,
                "path": head.path,
                "headers": [list(pair) for pair in head.headers],
                "body": head.body,
            }
        )
        if head.body:
            self._tasks.append(asyncio.create_task(self._send_body_task(read)))

    async def _send_body_task(self, read: BodyReader) -> None:
        try:
            await self._send_body(read)
        except TunnelError as exc:
            self._inbox.put_nowait({"type": "stream.error", "message": str(exc)})
        except RequestAborted:
            pass  # the public client left; the handler cancels the view

    async def response(self, timeout: float) -> ResponseHead:
        """Wait for the response head; raise a TunnelError subclass if none comes.

        The clock restarts whenever the local server takes a chunk of the request
        body, so a long upload is not mistaken for a silent local server.
        """
        loop = asyncio.get_running_loop()
        while True:
            remaining = self._last_progress + timeout - loop.time()
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    message = await self._inbox.get()
                break
            except TimeoutError as exc:
                if self._last_progress + timeout <= loop.time():
                    raise TunnelTimeout(f"no response within {timeout:g} s") from exc
        if message["type"] == "stream.error":
            self._finished = True  # the consumer has forgotten the stream already
            raise LocalServerError(message["message"])
        if message["type"] != "stream.response":
            raise TunnelClosed(f"unexpected {message['type']} before the response")
        headers = [(name, value) for name, value in message["headers"]]
        if not message["body"]:
            self._finished = True
        elif "data" in message:  # the first of the body came with the head
            self._first_data = {key: message[key] for key in ("data", "end", "chunks")}
        return ResponseHead(message["status"], headers, message["body"])

    def body_waiting(self) -> bool:
        """Whether a message of the body (or an error) has arrived and can be read now."""
        return self._first_data is not None or not self._inbox.empty()

    async def body(self) -> AsyncIterator[bytes]:
        """Yield the response body; raise TunnelClosed if it cannot be completed."""
        consumed = 0
        while not self._finished:
            if self._first_data is not None:
                message, self._first_data = self._first_data, None
            else:
                message = await self._inbox.get()
                if message["type"] == "stream.error":
                    self._finished = True
                    raise TunnelClosed(message["message"])
                if message["type"] != "stream.data":
                    raise TunnelClosed(f"unexpected {message['type']} in a response body")
            data, end = message["data"], message["end"]
            if end:
                self._finished = True
            if data:
                yield data
            if not end:
                # Credit goes back only once chunks have left for the public client,
                # so a slow reader slows this stream alone; a few at a time, since
                # each credit message is a channel-layer round trip.
                consumed += message["chunks"]
                if consumed >= CREDIT_BATCH:
                    await self._send({"type": "tunnel.window", "chunks": consumed})
                    consumed = 0

    async def close(self) -> None:
        """Stop background work; tell the tunnel if the stream ended early."""
        if self._liveness is not None:
            self._liveness.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not self._finished:
            self._finished = True
            with contextlib.suppress(TunnelError):
                await self._send({"type": "tunnel.cancel"})
        if self._receiver is not None:
            # Usually done already (it ends after the last message); never cancelled,
            # which on Redis could lose another stream's message (tunnels.receiving).
            await stop_receiving(self._layer, self._reply, self._receiver)


def _is_last(message: dict) -> bool:
    """Whether ``message`` is the last on its reply channel (the consumer forgets the stream)."""
    kind = message["type"]
    if kind == "stream.error":
        return True
    if kind == "stream.response" and not message["body"]:
        return True
    return kind in ("stream.response", "stream.data") and message.get("end", False)


def coalesce(queue: collections.deque[dict]) -> dict:
    """Pop the next message for a view from ``queue``, merged with what can go with it.

    Body chunks queued behind a response head or behind other body chunks travel
    in one message, and so do consecutive credits: fewer channel-layer messages,
    the same bytes in the same order. Used by the tunnel consumer's ``Outbox``.
    """
    message = queue.popleft()
    kind = message["type"]
    if kind == "stream.window":
        chunks = message["chunks"]
        while queue and queue[0]["type"] == "stream.window":
            chunks += queue.popleft()["chunks"]
        return {**message, "chunks": chunks}
    carries_body = kind == "stream.data" or (kind == "stream.response" and message["body"])
    if not carries_body or not queue or queue[0]["type"] != "stream.data":
        return message
    # A head may carry the start of its body already (the consumer joined them).
    parts = [message["data"]] if "data" in message else []
    chunks = message.get("chunks", 0)
    end = message.get("end", False)
    while queue and queue[0]["type"] == "stream.data" and not end:
        data = queue.popleft()
        parts.append(data["data"])
        chunks += data["chunks"]
        end = data["end"]
    return {**message, "data": b"".join(parts), "end": end, "chunks": chunks}


async def find_tunnel(subdomain: str) -> str:
    """Return the channel of the tunnel consumer serving ``subdomain``."""
    try:
        channel = await get_registry().lookup(subdomain)
    except RegistryError as exc:
        raise TunnelNotFound(str(exc)) from exc
    if channel is None:
        raise TunnelNotFound(subdomain)
    return channel


async def tunnel_gone(subdomain: str, channel: str, first_check: float = LIVENESS_INTERVAL) -> None:
    """Return once ``subdomain`` is no longer served by ``channel``.

    The tunnel consumer tells its streams when it ends; this covers a server
    process that died without telling anyone. Checks every ``LIVENESS_INTERVAL``
    seconds, the first after ``first_check``.
    """
    registry = get_registry()
    wait = first_check
    while True:
        await asyncio.sleep(wait)
        wait = LIVENESS_INTERVAL
        try:
            if await registry.lookup(subdomain) != channel:
                return
        except RegistryError:
            continue  # unknown is not gone; the next check decides


async def open_stream(subdomain: str, head: RequestHead, read: BodyReader) -> Stream:
    """Find the tunnel for ``subdomain`` and send it the request."""
    channel = await find_tunnel(subdomain)
    # The default prefix matters: channels-redis pops one Redis list per prefix under
    # a single per-process receive lock, so a second prefix starves the consumers.
    stream = Stream(subdomain, channel, await get_channel_layer().new_channel())
    try:
        await stream.start(head, read)
    except BaseException:
        await stream.close()
        raise
    return stream
