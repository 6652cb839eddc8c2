"""One public request's trip through the channel layer to a tunnel and back.

The view calls :func:`open_stream`; the tunnel consumer on the other end (maybe in
another process) turns the channel-layer messages (``tunnels.messages``) into
wire messages. Both directions are windowed (``client.flow``): at most
``WINDOW_CHUNKS`` body chunks of one stream wait in a channel at any time, so a
slow reader never fills a channel-layer queue and never makes a process hold
more than a window of a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from channels.exceptions import ChannelFull
from django.core.exceptions import RequestAborted

from client.flow import ReceiveWindow, SendWindow, chunk_count
from client.protocol import CHUNK_SIZE, INITIAL_REQUEST_CHUNKS, Headers
from tunnels import live, metrics
from tunnels.messages import (
    ErrorKind,
    StreamData,
    StreamError,
    StreamMessage,
    StreamResponse,
    StreamWindow,
    TunnelCancel,
    TunnelData,
    TunnelMessage,
    TunnelOpen,
    TunnelWindow,
    ends_stream,
    from_layer,
    to_layer,
)
from tunnels.registry import Registry, RegistryError, Route

from . import local_routes
from .backends import Backends
from .errors import (
    BodyLost,
    TunnelBusy,
    TunnelClosed,
    TunnelError,
    TunnelNotFound,
    TunnelTimeout,
    Unavailable,
    error_for,
)
from .payloads import prepare
from .receiving import is_stop, stop_receiving
from .redislayer import new_reply_channel

logger = logging.getLogger(__name__)

#: Seconds between checks that the tunnel behind a waiting stream still exists
#: (covers a server process that died without telling its streams).
LIVENESS_INTERVAL = 5.0


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

    def __init__(
        self,
        route: Route,
        reply_channel: str,
        backends: Backends,
        liveness_interval: float = LIVENESS_INTERVAL,
    ) -> None:
        self.route = route
        self._backends = backends
        self._layer = backends.layer
        self._tunnel = route.channel
        self._reply = reply_channel
        self._liveness_interval = liveness_interval
        self._inbox: asyncio.Queue[StreamMessage] = asyncio.Queue()
        # The client widens it when it starts serving the stream (protocol 2).
        self._request_window = SendWindow(initial=INITIAL_REQUEST_CHUNKS)
        self._response_window = ReceiveWindow()
        self._credit_changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._receiver: asyncio.Task | None = None
        self._liveness: asyncio.TimerHandle | None = None
        self._finished = False
        #: Why we give up on the stream, for the client's console (a timeout); "" otherwise.
        self._cancel_reason = ""
        self._first_data: StreamResponse | None = None
        self._last_progress = asyncio.get_running_loop().time()

    async def _send(self, message: TunnelMessage) -> None:
        try:
            raw = await prepare(
                self._backends.payloads, self._layer, self._tunnel, to_layer(message)
            )
        except Exception as exc:  # Redis failing
            raise BodyLost(f"cannot pass the body on: {exc.__class__.__name__}") from exc
        try:
            await self._layer.send(self._tunnel, raw)
        except ChannelFull as exc:
            raise TunnelBusy("tunnel queue full") from exc
        except Exception as exc:  # Redis unreachable: a fast 503, not a Django 500
            raise Unavailable(f"channel layer unavailable: {exc.__class__.__name__}") from exc

    async def _receive_loop(self) -> None:
        """Sort the reply channel's messages: credit here, everything else to the inbox.

        Ends by itself after the stream's last message (cancelling a task waiting
        in the channel layer cost more than 5 % of a small request's CPU).
        """
        while True:
            raw = await self._layer.receive(self._reply)
            if is_stop(raw):
                return
            try:
                raw = await self._backends.payloads.fetch(raw)
            except Exception as exc:  # PayloadLost, or Redis failing: never a short body
                logger.warning("stream %s: response body lost: %r", self._reply, exc)
                self._inbox.put_nowait(StreamError(ErrorKind.LOST, "response body lost"))
                return
            message = from_layer(raw)
            if isinstance(message, StreamWindow):
                self._request_window.granted(message.chunks)
                self._credit_changed.set()
                self._last_progress = asyncio.get_running_loop().time()
                continue
            assert isinstance(message, (StreamResponse, StreamData, StreamError)), message
            self._inbox.put_nowait(message)
            if ends_stream(message):
                return

    def _watch_liveness(self) -> None:
        # Run by a timer, not a task from the start: most streams end before the
        # first check is due.
        self._tasks.append(asyncio.create_task(self._liveness_loop()))

    async def _liveness_loop(self) -> None:
        await tunnel_gone(self._backends.registry, self.route, 0, self._liveness_interval)
        logger.info("stream %s: tunnel %s is gone", self._reply, self.route.subdomain)
        self._inbox.put_nowait(StreamError(ErrorKind.TUNNEL_CLOSED, "tunnel closed"))

    async def _send_body(self, read: BodyReader) -> None:
        window = self._request_window
        while True:
            while not window.open:
                self._credit_changed.clear()
                await self._credit_changed.wait()
            # All the credit at once: one channel-layer message for many chunks.
            data, end = await read(window.available * CHUNK_SIZE)
            chunks = chunk_count(len(data))
            window.sent(chunks)
            await self._send(TunnelData(self._reply, data, end, chunks))
            if end:
                return

    async def start(self, head: RequestHead, read: BodyReader) -> None:
        logger.debug("stream %s: opening on %s", self._reply, self._tunnel)
        self._receiver = asyncio.create_task(self._receive_loop())
        self._liveness = asyncio.get_running_loop().call_later(
            self._liveness_interval, self._watch_liveness
        )
        await self._send(TunnelOpen(self._reply, head.method, head.path, head.headers, head.body))
        if head.body:
            self._tasks.append(asyncio.create_task(self._send_body_task(read)))

    async def _send_body_task(self, read: BodyReader) -> None:
        try:
            await self._send_body(read)
        except TunnelError as exc:
            self._inbox.put_nowait(StreamError(exc.kind, str(exc)))
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
                    self._cancel_reason = f"504: no response within {timeout:g} s"
                    raise TunnelTimeout(f"no response within {timeout:g} s") from exc
        if isinstance(message, StreamError):
            self._finished = True  # the consumer has forgotten the stream already
            raise error_for(message)
        if not isinstance(message, StreamResponse):
            raise TunnelClosed(f"unexpected {type(message).__name__} before the response")
        if not message.body:
            self._finished = True
        elif message.data is not None:  # the first of the body came with the head
            self._first_data = message
        return ResponseHead(message.status, message.headers, message.body)

    def body_waiting(self) -> bool:
        """Whether a message of the body (or an error) has arrived and can be read now."""
        return self._first_data is not None or not self._inbox.empty()

    async def body(self) -> AsyncIterator[bytes]:
        """Yield the response body; raise TunnelClosed if it cannot be completed."""
        window = self._response_window
        while not self._finished:
            message: Any
            if self._first_data is not None:
                message, self._first_data = self._first_data, None
            else:
                message = await self._inbox.get()
                if isinstance(message, StreamError):
                    self._finished = True
                    raise error_for(message)
                if not isinstance(message, StreamData):
                    raise TunnelClosed(f"unexpected {type(message).__name__} in a response body")
            data, end, chunks = message.data, message.end, message.chunks
            window.received(chunks)
            if end:
                self._finished = True
            if data:
                yield data
            if not end:
                # Credit goes back only once chunks have left for the public client,
                # so a slow reader slows this stream alone.
                credit = window.consumed(chunks)
                if credit:
                    await self._send(TunnelWindow(self._reply, credit))

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
                await self._send(TunnelCancel(self._reply, self._cancel_reason))
        if self._receiver is not None:
            # Usually done already (it ends after the last message); never cancelled,
            # which on Redis could lose another stream's message (tunnels.relay.receiving).
            await stop_receiving(self._layer, self._reply, self._receiver)


async def find_route(subdomain: str, registry: Registry) -> Route:
    """Return the route to the tunnel serving ``subdomain``.

    Raises TunnelNotFound, or Unavailable when the registry cannot be reached.
    """
    held_here = local_routes.find(subdomain)
    if held_here is not None:
        metrics.DELIVERIES.labels("local").inc()
        return held_here
    try:
        route = await registry.lookup(subdomain)
    except RegistryError as exc:
        raise Unavailable(str(exc)) from exc
    if route is None:
        raise TunnelNotFound(subdomain)
    metrics.DELIVERIES.labels("layer").inc()
    return route


async def tunnel_gone(
    registry: Registry,
    route: Route,
    first_check: float = LIVENESS_INTERVAL,
    interval: float = LIVENESS_INTERVAL,
) -> None:
    """Return once the connection on ``route.channel`` is gone.

    The tunnel consumer tells its streams when it ends; this covers a server
    process that died without telling anyone: its connection is neither in the
    registry nor publishing its live entry any more. (A connection that another
    took the place of is out of the registry but still serves its streams.)
    Checks every ``interval`` seconds, the first after ``first_check``.
    """
    wait = first_check
    while True:
        await asyncio.sleep(wait)
        wait = interval
        try:
            found = await registry.lookup(route.subdomain)
            if found is not None and found.serves(route.channel):
                continue
            if not await live.is_live(route.subdomain, route.channel):
                return
        except Exception:  # RegistryError, or Redis failing: unknown is not gone
            continue


async def open_stream(
    route: Route, head: RequestHead, read: BodyReader, backends: Backends | None = None
) -> Stream:
    """Send the request to the tunnel on ``route`` and return the stream."""
    backends = backends or Backends.current()
    # The default prefix matters: channels-redis pops one Redis list per prefix under
    # a single per-process receive lock, so a second prefix starves the consumers.
    reply = await new_reply_channel(backends.layer, route.channel)
    stream = Stream(route, reply, backends)
    try:
        await stream.start(head, read)
    except BaseException:
        await stream.close()
        raise
    return stream
