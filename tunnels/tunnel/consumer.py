"""The consumer of a client's tunnel WebSocket (``/tunnel`` on the main host). Glue only:
the session (``tunnels.tunnel.session``) holds every rule."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from channels.generic.websocket import AsyncWebsocketConsumer

from client.protocol import AUTH_TIMEOUT, CloseCode
from tunnels import metrics
from tunnels.limits import auth_refusal
from tunnels.outages import receive_through_outages
from tunnels.relay.backends import Backends
from tunnels.relay.dispatch import LeanDispatch

from .session import SessionClosed, TunnelSession

logger = logging.getLogger(__name__)

#: ``Luminet-Error`` of a tunnel handshake refused for too many failed authentications.
AUTH_FAILURES_CODE = "auth-failures"


class TunnelConsumer(LeanDispatch, AsyncWebsocketConsumer):
    """Owns one client's tunnel WebSocket (``/tunnel`` on the main host)."""

    session: TunnelSession | None = None
    _watchers: tuple[asyncio.Task, ...] = ()

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ends (a disconnect, daphne cancelling it on shutdown
            # without one, or a crash such as the channel layer failing), its watchers
            # end with it and the subdomain is released. A heartbeat that outlived its
            # consumer kept the subdomain live for a dead channel (issue 8).
            await self._end()

    async def _end(self) -> None:
        watchers, self._watchers = self._watchers, ()
        for task in watchers:
            task.cancel()
        for task in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.ended()

    @property
    def _live(self) -> TunnelSession:
        assert self.session is not None, "a message before connect()"
        return self.session

    def layer_receiver(self):
        # The tunnel's WebSocket does not pass through Redis: it outlives an outage
        # (tunnels.outages) instead of closing with it.
        return functools.partial(receive_through_outages, super().layer_receiver())

    async def connect(self) -> None:
        client = self.scope.get("client") or ("?", 0)
        if (refused := await auth_refusal(client[0])) is not None:
            # Token brute force: refused before any database work (README, limits).
            await self._deny(429, refused.retry_after)
            return
        self.session = TunnelSession(
            self.channel_name,
            f"{client[0]}:{client[1]}",
            send_text=lambda text: self.send(text_data=text),
            send_bytes=lambda data: self.send(bytes_data=data),
            backends=Backends.current(),
        )
        metrics.track(self.session)
        await self.accept()
        self._watchers = (
            asyncio.create_task(self._guard(self._auth_deadline())),
            asyncio.create_task(self._guard(self.session.keep_alive())),
        )

    async def _deny(self, status: int, retry_after: int) -> None:
        """Refuse the handshake with an HTTP answer (the ASGI denial response)."""
        headers = [
            (b"luminet-error", AUTH_FAILURES_CODE.encode()),
            (b"retry-after", str(retry_after).encode()),
        ]
        await self.base_send(
            {"type": "websocket.http.response.start", "status": status, "headers": headers}
        )
        await self.base_send({"type": "websocket.http.response.body", "body": b""})

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT)
        if self._live.subdomain is None:
            raise SessionClosed(CloseCode.AUTH_TIMEOUT, "auth timeout")

    async def _guard(self, work) -> None:
        try:
            await work
        except SessionClosed as closed:
            if self.session is not None and self.session.subdomain is not None:
                logger.info(
                    "tunnel %s: closing %s (%d %s)",
                    self.session.subdomain,
                    self.session.peer,
                    closed.code,
                    closed.reason,
                )
            await self.close(code=closed.code, reason=closed.reason)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        await self._guard(self._live.received(text_data, bytes_data))

    async def disconnect(self, code) -> None:
        if self.session is not None and self.session.subdomain is not None:
            logger.info(
                "tunnel %s: %s closed the connection (%s)",
                self.session.subdomain,
                self.session.peer,
                code,
            )
        await self._end()

    async def _from_view(self, event) -> None:
        # Channel-layer messages from views and public sockets (tunnels.messages).
        await self._guard(self._live.from_view(event))

    tunnel_open = tunnel_data = tunnel_window = tunnel_cancel = _from_view
    tunnel_ws_open = tunnel_ws_frame = tunnel_ws_close = tunnel_replaced = _from_view
    tunnel_disconnect = tunnel_move = _from_view
    tunnel_refused = _from_view
