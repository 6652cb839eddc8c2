"""A tunnel session and the views' streams on the in-memory layer, with a scripted client.

No daphne, no sockets, no database: the session's collaborators are given to it
(``Backends``, ``Tokens``, ``Timing``), and what it would write on the tunnel
WebSocket lands in ``sent``. Tests drive it in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from client import protocol
from tokens.auth import AuthenticatedToken
from tunnels.registry import MemoryRegistry
from tunnels.relay.backends import Backends
from tunnels.relay.layers import InProcessChannelLayer
from tunnels.relay.payloads import InlinePayloads
from tunnels.relay.receiving import is_stop, stop_receiving
from tunnels.tunnel.session import SessionClosed, Timing, Tokens, TunnelSession

GOOD_TOKEN = "lmn_good"
OTHER_TOKEN = "lmn_other"
#: Seconds any single wait in these tests may take: they run in milliseconds.
WAIT = 2.0


def backends(capacity: int = 100) -> Backends:
    return Backends(InProcessChannelLayer(capacity=capacity), MemoryRegistry(), InlinePayloads())


@dataclass
class FakeTokens:
    """Two valid tokens; ``revoked`` ids stop being valid; ``reserved`` maps names to ids."""

    revoked: set[int] = field(default_factory=set)
    reserved: dict[str, int] = field(default_factory=dict)
    #: Each token's allow list as the operator set it (``Token.allowed_cidrs``).
    allowed_cidrs: dict[int, str] = field(default_factory=dict)

    async def authenticate(self, plaintext: str) -> AuthenticatedToken | None:
        known = {GOOD_TOKEN: 1, OTHER_TOKEN: 2}
        if plaintext not in known:
            return None
        token_id = known[plaintext]
        return AuthenticatedToken(
            id=token_id,
            name=f"t{token_id}",
            prefix=plaintext[:8],
            allowed_cidrs=self.allowed_cidrs.get(token_id, ""),
        )

    async def is_still_valid(self, token_id: int) -> bool:
        return token_id not in self.revoked

    async def reserved_for(self, name: str) -> int | None:
        return self.reserved.get(name)

    def tokens(self) -> Tokens:
        return Tokens(self.authenticate, self.is_still_valid, self.reserved_for)


class ScriptedTunnel:
    """A session plus the channel-layer loop a consumer would run for it."""

    def __init__(
        self,
        backends: Backends,
        tokens: FakeTokens,
        channel: str,
        timing: Timing,
        max_streams: int | None = None,
    ) -> None:
        self.backends = backends
        self.sent: asyncio.Queue[protocol.Message] = asyncio.Queue()
        self.closed: asyncio.Future[SessionClosed] = asyncio.get_running_loop().create_future()
        self.session = TunnelSession(
            channel,
            "127.0.0.1:1",
            send_text=self._text,
            send_bytes=self._bytes,
            backends=backends,
            tokens=tokens.tokens(),
            timing=timing,
            max_streams=max_streams,
        )
        self._loop = asyncio.create_task(self._from_views())

    async def _text(self, text: str) -> None:
        await self.sent.put(protocol.decode(text))

    async def _bytes(self, data: bytes) -> None:
        await self.sent.put(protocol.decode_data(data))

    async def _from_views(self) -> None:
        layer = self.backends.layer
        while True:
            raw = await layer.receive(self.session.channel)
            if is_stop(raw):
                return
            await self._guard(self.session.from_view(raw))

    async def _guard(self, work) -> None:
        try:
            await work
        except SessionClosed as closed:
            if not self.closed.done():
                self.closed.set_result(closed)

    async def client_says(self, message: protocol.Message) -> None:
        """A message from the client, as the consumer hands it over."""
        if isinstance(message, (protocol.Data, protocol.WsFrame)):
            await self._guard(self.session.received(None, protocol.encode_data(message)))
        else:
            await self._guard(self.session.received(protocol.encode(message), None))

    async def next_sent(self) -> protocol.Message:
        async with asyncio.timeout(WAIT):
            return await self.sent.get()

    async def close_code(self) -> int:
        async with asyncio.timeout(WAIT):
            return (await self.closed).code

    async def authenticate(self, token: str = GOOD_TOKEN) -> protocol.AuthOk:
        await self.client_says(protocol.Auth(token=token))
        reply = await self.next_sent()
        assert isinstance(reply, protocol.AuthOk), reply
        return reply

    async def stop(self) -> None:
        await self.session.ended()
        await stop_receiving(self.backends.layer, self.session.channel, self._loop)


@contextlib.asynccontextmanager
async def scripted_tunnel(
    backends: Backends,
    tokens: FakeTokens | None = None,
    max_streams: int | None = None,
    **timing: float,
):
    channel = await backends.layer.new_channel()
    tunnel = ScriptedTunnel(
        backends,
        tokens or FakeTokens(),
        channel,
        Timing(heartbeat=timing.get("heartbeat", 60.0), grace=timing.get("grace", 60.0)),
        max_streams,
    )
    try:
        yield tunnel
    finally:
        await tunnel.stop()
