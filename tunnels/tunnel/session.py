"""The server's end of one client's tunnel WebSocket.

Turns wire messages from the client into channel-layer messages for the waiting
views (``tunnels.messages``), and channel-layer messages from views into wire
messages. The consumer that owns the socket only feeds this class; all policy
lives here. Everything it talks to is passed in (``Backends``, ``Tokens``,
``Timing``), so its rules are unit-tested on the in-memory layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, assert_never

from channels.exceptions import ChannelFull
from django.conf import settings

from client import protocol
from client.flow import ReceiveWindow, SendWindow, split_chunks
from client.protocol import AuthRefusal, CloseCode, ProtocolError, StreamRefused
from tokens import auth, reservations
from tokens.auth import AuthenticatedToken
from tokens.models import parse_cidrs
from tunnels import drain, limits, live, outages
from tunnels.edge.notices import NoticeLimit
from tunnels.edge.policy import PolicyError, TunnelPolicy
from tunnels.hosts import public_url
from tunnels.limits import Limits, LimitsUnavailable, get_limits, tunnel_rate_limit
from tunnels.messages import (
    ErrorKind,
    StreamData,
    StreamError,
    StreamMessage,
    StreamResponse,
    StreamWindow,
    StreamWsAccept,
    StreamWsClose,
    StreamWsFrame,
    StreamWsReject,
    TunnelCancel,
    TunnelData,
    TunnelDisconnect,
    TunnelMove,
    TunnelOpen,
    TunnelRefused,
    TunnelReplaced,
    TunnelWindow,
    TunnelWsClose,
    TunnelWsFrame,
    TunnelWsOpen,
    from_layer,
    to_layer,
)
from tunnels.registry import ALONE, Member, Refreshed, RegistryError, Route, live_ttl
from tunnels.relay import local_routes, payloads
from tunnels.relay.backends import Backends
from tunnels.relay.outbox import Outbox
from tunnels.relay.payloads import PayloadLost

from .authlog import failed_auth_log
from .names import NameRefused, grant_subdomain

logger = logging.getLogger(__name__)


#: Seconds a closing tunnel spends sending the views what is still queued for them.
OUTBOX_FLUSH_TIMEOUT = 2.0
#: Seconds a connection whose place another took stays open, idle: long enough for a
#: request routed to it just before to arrive and be served.
MOVED_LINGER = 2.0


class SessionClosed(Exception):
    """The session ended; ``code`` and ``reason`` go into the WebSocket close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Tokens:
    """How the session checks tokens (the database, in production)."""

    authenticate: Callable[[str], Awaitable[AuthenticatedToken | None]] = auth.authenticate
    is_still_valid: Callable[[int], Awaitable[bool]] = auth.is_still_valid
    #: Which token a subdomain is reserved for, if any.
    reserved_for: Callable[[str], Awaitable[int | None]] = reservations.reserved_for


@dataclass(frozen=True)
class Timing:
    heartbeat: float
    grace: float

    @classmethod
    def current(cls) -> Timing:
        return cls(settings.LUMINET_HEARTBEAT_INTERVAL, settings.LUMINET_SUBDOMAIN_GRACE)


@dataclass
class _StreamState:
    reply: str
    websocket: bool = False
    # DATA frames (or fragments) the client may still send us for this stream.
    response: ReceiveWindow = field(default_factory=ReceiveWindow)
    # Request DATA frames (or fragments) sent to the client and not yet acknowledged.
    request: SendWindow = field(default_factory=SendWindow)
    # A response head held for the DATA frame the client said follows it.
    held_head: StreamResponse | None = None


SendText = Callable[[str], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]


async def tunnel_policy(message: protocol.Auth, token: AuthenticatedToken) -> TunnelPolicy | None:
    """The rules the tunnel asked for, within its token's allow list; None without any.

    Raises PolicyError when they cannot hold together.
    """
    try:
        token_allow = parse_cidrs(token.allowed_cidrs)
    except ValueError as exc:  # validated on save; a bad row must not open the tunnel
        raise PolicyError("this token's allowed networks are invalid; ask the operator") from exc
    rules = message.basic_auth or message.allow_cidrs or message.deny_cidrs or message.webhooks
    if not (rules or token_allow):
        return None
    # scrypt takes milliseconds per credential: off the event loop.
    policy = await asyncio.to_thread(
        TunnelPolicy.build,
        message.basic_auth,
        message.allow_cidrs,
        message.deny_cidrs,
        tuple(token_allow),
        message.webhooks,
    )
    return policy or None


class TunnelSession:
    def __init__(
        self,
        channel: str,
        peer: str,
        send_text: SendText,
        send_bytes: SendBytes,
        backends: Backends,
        tokens: Tokens | None = None,
        timing: Timing | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_streams: int | None = None,
        limits: Limits | None = None,
    ):
        self.channel = channel
        self.peer = peer
        self._send_text = send_text
        self._send_bytes = send_bytes
        self._layer = backends.layer
        self._payloads = backends.payloads
        self._registry = backends.registry
        self._tokens = tokens or Tokens()
        self._timing = timing or Timing.current()
        self._clock = clock
        self._limits = limits or get_limits()
        #: Streams open at once; one more is refused (503 tunnel-busy), not queued:
        #: each holds a window of memory here, in the view and in the client.
        self._max_streams = max_streams or settings.LUMINET_MAX_STREAMS_PER_TUNNEL
        self._outbox = Outbox(self._layer, self._view_lost, self._prepare)
        self.token_id: int | None = None
        self.token_label = ""
        self.subdomain: str | None = None
        #: The rules at the edge, in the registry entry with the subdomain.
        self.policy: TunnelPolicy | None = None
        #: Requests per limit window, 0 for none; in the registry entry with the policy.
        self.rate_limit = 0
        #: What this connection said about itself: its node, tunnel id, slot, pool.
        self._member = ALONE
        #: Whether this tunnel counts against its token's LUMINET_TUNNELS_PER_TOKEN.
        self._counted = False
        #: Whether a newer connection took the subdomain over (it counts it now).
        self._replaced = False
        #: Whether the same tunnel's newer connection took this one's place: then it
        #: serves its streams in flight and ends with the last (``CloseCode.MOVED``).
        self._moved = False
        #: When a connection told to move (the process is stopping) ends regardless.
        self._move_by: float | None = None
        self._moved_until = 0.0
        #: Wakes keep_alive before its next heartbeat (a moved connection's linger ended).
        self._wake = asyncio.Event()
        self._streams: dict[int, _StreamState] = {}
        self._by_reply: dict[str, int] = {}
        self._next_stream = 1
        self._started = clock()
        self._since = time.time()
        self._token_name = ""
        self._requests = 0
        self._bytes_in = 0
        self._bytes_out = 0
        self._ended = False
        self._notices = NoticeLimit(clock=clock)

    # -- wire messages from the client -------------------------------------

    async def received(self, text: str | None, data: bytes | None) -> None:
        """Handle one WebSocket message; raise SessionClosed to end the session."""
        await self._received(text, data)
        self._close_if_moved()

    async def _received(self, text: str | None, data: bytes | None) -> None:
        try:
            if data is not None:
                await self._received_data(protocol.decode_data(data))
            elif text is not None:
                await self._received_control(protocol.decode_from_client(text))
        except StreamRefused as exc:
            if self.subdomain is None:
                raise SessionClosed(protocol.CloseCode.PROTOCOL_ERROR, str(exc)[:120]) from exc
            await self._refuse_stream(exc.stream, str(exc))
        except ProtocolError as exc:
            logger.warning("tunnel %s: protocol error from %s: %s", self.subdomain, self.peer, exc)
            # Release the subdomain before the closing handshake, not after it: public
            # requests stop being routed here at once.
            await self.ended()
            raise SessionClosed(protocol.CloseCode.PROTOCOL_ERROR, str(exc)[:120]) from exc

    async def _received_control(self, message: protocol.FromClient) -> None:
        if self.subdomain is None:
            if not isinstance(message, protocol.Auth):
                raise ProtocolError("the first message must be auth")
            await self._authenticate(message)
            return
        match message:
            case protocol.Response(stream=stream_id):
                stream = self._stream(stream_id, websocket=False)
                if stream is None:
                    return  # cancelled by the public side meanwhile
                if not message.body:
                    self._forget(stream_id)
                head = StreamResponse(message.status, message.headers, message.body)
                if message.data_follows:
                    stream.held_head = head  # one channel-layer message for both
                else:
                    self._to_view(stream.reply, head)
            case protocol.Window(stream=stream_id, chunks=chunks):
                stream = self._streams.get(stream_id)
                if stream is None:
                    return
                # Credit for chunks never sent is ignored (client.flow).
                if counted := stream.request.granted(chunks):
                    self._to_view(stream.reply, StreamWindow(counted))
            case protocol.StreamError(stream=stream_id):
                stream = self._streams.get(stream_id)
                if stream is not None:
                    self._forget(stream_id)
                    if stream.held_head is not None:
                        self._to_view(stream.reply, stream.held_head)
                    kind = ErrorKind.LOCAL_REFUSED if message.refused else ErrorKind.LOCAL
                    self._to_view(stream.reply, StreamError(kind, message.message))
            case protocol.WsAccept(stream=stream_id):
                stream = self._stream(stream_id, websocket=True)
                if stream is not None:
                    self._to_view(stream.reply, StreamWsAccept(message.subprotocol))
            case protocol.WsReject(stream=stream_id):
                stream = self._stream(stream_id, websocket=True)
                if stream is not None:
                    self._forget(stream_id)
                    self._to_view(stream.reply, StreamWsReject(message.status, message.headers))
            case protocol.WsClose(stream=stream_id):
                stream = self._stream(stream_id, websocket=True)
                if stream is not None:
                    self._forget(stream_id)
                    self._to_view(stream.reply, StreamWsClose(message.code, message.reason))
            case protocol.Auth():
                raise ProtocolError("already authenticated")
            case _:
                assert_never(message)

    async def _received_data(self, message: protocol.BinaryMessage) -> None:
        if self.subdomain is None:
            raise ProtocolError("the first message must be auth")
        stream = self._stream(message.stream, websocket=isinstance(message, protocol.WsFrame))
        if stream is None:
            return  # cancelled meanwhile: its in-flight chunks are expected
        try:
            stream.response.received()
        except ProtocolError:
            raise ProtocolError(f"stream {message.stream} sent beyond its window") from None
        self._bytes_out += len(message.payload)
        event: StreamMessage
        match message:
            case protocol.Data(end=end):
                if end:
                    self._forget(message.stream)
                held, stream.held_head = stream.held_head, None
                if held is not None:
                    event = StreamResponse(
                        held.status, held.headers, held.body, message.payload, end, 1
                    )
                else:
                    event = StreamData(message.payload, end, 1)
            case protocol.WsFrame(text=text, fin=fin):
                event = StreamWsFrame(message.payload, text, fin)
            case _:
                assert_never(message)
        self._to_view(stream.reply, event)

    async def _authenticate(self, message: protocol.Auth) -> None:
        if drain.state.active:
            # Stopping: the client dials again and reaches another process.
            draining = protocol.AuthError(
                "this server process is stopping", retry=True, code=AuthRefusal.DRAINING
            )
            await self._send_text(protocol.encode(draining))
            raise SessionClosed(CloseCode.ELSEWHERE, AuthRefusal.DRAINING)
        token = await self._tokens.authenticate(message.token)
        if token is None:
            address = self.peer.rpartition(":")[0] or self.peer
            failed_auth_log.failed(address)
            with contextlib.suppress(LimitsUnavailable):  # the refusal goes out regardless
                await limits.auth_failed(address, self._limits)
            await self._send_text(
                protocol.encode(protocol.AuthError("invalid token", code=AuthRefusal.INVALID_TOKEN))
            )
            raise SessionClosed(protocol.CloseCode.AUTH_FAILED, "invalid token")
        try:
            policy = await tunnel_policy(message, token)
        except PolicyError as refused:
            logger.info("tunnel refused to %s (token %s): %s", self.peer, token.prefix, refused)
            bad_rules = protocol.AuthError(str(refused), code=AuthRefusal.RULES_REFUSED)
            await self._send_text(protocol.encode(bad_rules))
            raise SessionClosed(CloseCode.AUTH_FAILED, AuthRefusal.RULES_REFUSED) from None
        if settings.LUMINET_NODE in message.avoid:
            # Another connection of this tunnel is here: the client dials again to
            # reach another process, before anything is routed to this one.
            avoided = protocol.AuthError(
                "another connection of this tunnel is on this server process",
                retry=True,
                code=AuthRefusal.NODE_AVOIDED,
            )
            await self._send_text(protocol.encode(avoided))
            raise SessionClosed(CloseCode.ELSEWHERE, AuthRefusal.NODE_AVOIDED)
        rate_limit = tunnel_rate_limit(token.rate_limit)
        member = Member(settings.LUMINET_NODE, message.tunnel, message.slot, message.pool)
        try:
            subdomain, claim = await grant_subdomain(
                self._registry,
                token.id,
                self.channel,
                message.subdomain,
                required=message.required,
                resume=message.resume,
                reserved_for=self._tokens.reserved_for,
                policy=policy,
                rate_limit=rate_limit,
                member=member,
            )
        except NameRefused as refused:
            logger.info("tunnel refused to %s (token %s): %s", self.peer, token.prefix, refused)
            refusal = protocol.AuthError(str(refused), code=refused.code)
            await self._send_text(protocol.encode(refusal))
            raise SessionClosed(CloseCode.AUTH_FAILED, refused.code) from None
        except RegistryError as exc:
            logger.error("tunnel registry failure for %s: %s", self.peer, exc)
            busy = protocol.AuthError(
                "server busy, try again", retry=True, code=AuthRefusal.SERVER_BUSY
            )
            await self._send_text(protocol.encode(busy))
            raise SessionClosed(CloseCode.TRY_AGAIN_LATER, "try again later") from exc
        await self._admit(token, subdomain)
        self.token_id, self.token_label, self.subdomain = token.id, token.prefix, subdomain
        self.policy, self.rate_limit, self._member = policy, rate_limit, member
        local_routes.hold(Route(subdomain, self.channel, token.id, policy, rate_limit))
        drain.state.sessions.add(self.channel)
        for stale in claim.replaced:
            # The same token's older connection to this subdomain is stale: close it.
            with contextlib.suppress(ChannelFull):
                await self._layer.send(stale, to_layer(TunnelReplaced()))
        for predecessor in claim.moved:
            # This tunnel's connection in this slot before: it finishes its streams.
            with contextlib.suppress(ChannelFull):
                await self._layer.send(predecessor, to_layer(TunnelReplaced(moved=True)))
        url = public_url(subdomain)
        rules = tuple(policy.describe()) if policy else ()
        self._token_name, self._since = token.name, time.time()
        await live.publish(self._live_entry())
        # Alone, without Redis, there is no other process to spread connections over:
        # naming none spares the client its redials.
        node = settings.LUMINET_NODE if settings.REDIS_URL else ""
        ok = protocol.AuthOk(subdomain, url, rules, node)
        await self._send_text(protocol.encode(ok))
        logger.info(
            "tunnel %s opened by %s (token %s)%s",
            subdomain,
            self.peer,
            token.prefix,
            f", rules: {', '.join(rules)}" if rules else "",
        )

    async def _admit(self, token: AuthenticatedToken, subdomain: str) -> None:
        """Count the tunnel against its token's LUMINET_TUNNELS_PER_TOKEN, or refuse it
        (the subdomain just claimed is released, held for the token as on any close)."""
        per_token = settings.LUMINET_TUNNELS_PER_TOKEN
        if not per_token:
            return
        try:
            admitted = await self._limits.join(str(token.id), subdomain, per_token, live_ttl())
        except LimitsUnavailable as exc:
            logger.error("tunnel limits unavailable for %s: %s", self.peer, exc)
            await self._release(subdomain, token.id)
            busy = protocol.AuthError(
                "server busy, try again", retry=True, code=AuthRefusal.SERVER_BUSY
            )
            await self._send_text(protocol.encode(busy))
            raise SessionClosed(CloseCode.TRY_AGAIN_LATER, "try again later") from exc
        if admitted:
            self._counted = True
            return
        logger.info(
            "tunnel refused to %s: token %s has %d live", self.peer, token.prefix, per_token
        )
        await self._release(subdomain, token.id)
        refusal = protocol.AuthError(
            f"this token has {per_token} tunnels open already, the most this server allows "
            "per token",
            code=AuthRefusal.TUNNEL_LIMIT,
        )
        await self._send_text(protocol.encode(refusal))
        raise SessionClosed(CloseCode.AUTH_FAILED, AuthRefusal.TUNNEL_LIMIT)

    async def _prepare(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        return await payloads.prepare(self._payloads, self._layer, channel, message)

    async def _release(self, subdomain: str, token_id: int) -> bool:
        """Release this connection; True when it was its tunnel's last."""
        try:
            return await self._registry.release(
                subdomain, self.channel, token_id, self._timing.grace
            )
        except RegistryError:
            return True  # the entry expires by itself; count the tunnel as gone

    # -- channel-layer messages from views ---------------------------------

    async def from_view(self, raw: dict[str, Any]) -> None:
        """Handle one channel-layer message from a view or a public WebSocket."""
        await self._from_view(raw)
        self._close_if_moved()

    def _moved_away(self) -> None:
        """The same tunnel's new connection in this slot took our place: no new request
        comes here; the streams in flight finish first. Said by the message the new
        connection's process sends, or found by a heartbeat before it arrives."""
        if self._moved or self.subdomain is None:
            return
        self._replaced = self._moved = True
        self._moved_until = self._clock() + MOVED_LINGER
        # keep_alive closes it then, if nothing else comes by meanwhile.
        asyncio.get_running_loop().call_later(MOVED_LINGER, self._wake.set)
        if self._move_by is None:  # a stale connection's streams get as long
            self._move_by = self._clock() + settings.LUMINET_DRAIN_SECONDS
        local_routes.drop(self.subdomain, self.channel)
        logger.info("tunnel %s: connection of %s moved", self.subdomain, self.peer)

    def _close_if_moved(self) -> None:
        """A connection whose place another took (``moved``) ends with its last stream,
        but not before ``MOVED_LINGER``: a request routed here just before the move
        is on its way, and is served."""
        if self._moved and not self._streams and self._clock() >= self._moved_until:
            raise SessionClosed(CloseCode.MOVED, "moved to a newer connection")

    async def _from_view(self, raw: dict[str, Any]) -> None:
        if self.subdomain is None:
            return  # not authenticated: nobody can have found this channel
        try:
            raw = await self._payloads.fetch(raw)
        except Exception as exc:  # PayloadLost, or Redis failing: the body is incomplete
            await self._body_lost(raw.get("reply", ""), exc)
            return
        message = from_layer(raw)
        match message:
            case TunnelOpen() | TunnelWsOpen() if len(self._streams) >= self._max_streams:
                logger.warning(
                    "tunnel %s: %d streams open; refusing one", self.subdomain, len(self._streams)
                )
                self._to_view(message.reply, StreamError(ErrorKind.BUSY, "too many open streams"))
                return
            case TunnelOpen():
                await self._open_stream(message)
                return
            case TunnelWsOpen():
                await self._open_socket(message)
                return
            case TunnelReplaced(moved=True):
                self._moved_away()
                return
            case TunnelReplaced():
                self._replaced = True
                logger.info("tunnel %s: connection of %s taken over", self.subdomain, self.peer)
                raise SessionClosed(protocol.CloseCode.REPLACED, "replaced by a newer connection")
            case TunnelMove(seconds=seconds):
                self._move_by = self._clock() + seconds
                await self._send_text(protocol.encode(protocol.Move(seconds)))
                return
            case TunnelDisconnect():
                logger.info("tunnel %s disconnected by the operator", self.subdomain)
                # No hold for a tunnel the operator ended: the name is free at once.
                self._timing = replace(self._timing, grace=0.0)
                await self.ended()
                raise SessionClosed(CloseCode.DISCONNECTED, "disconnected by the server's operator")
            case TunnelRefused(method=method, path=path, status=status, rule=rule):
                # Each process limits what it sends; this limits the tunnel's total.
                if self._notices.allow(self.channel):
                    notice = protocol.Refused(method, path, status, rule)
                    await self._send_text(protocol.encode(notice))
                return
        # Every other message is for a stream that may have ended meanwhile (the
        # client finished or failed it): then it is expected, and dropped here.
        assert not isinstance(message, StreamMessage), f"{type(message).__name__} to a tunnel"
        stream_id = self._by_reply.get(message.reply)
        if stream_id is None:
            return
        stream = self._streams[stream_id]
        match message:
            case TunnelData():
                await self._stream_data(stream_id, stream, message)
            case TunnelWsFrame():
                stream.request.sent()
                self._bytes_in += len(message.data)
                frame = protocol.WsFrame(stream_id, message.data, message.text, message.fin)
                await self._send_bytes(protocol.encode_data(frame))
            case TunnelWindow(chunks=chunks):
                stream.response.credited(chunks)
                await self._send_text(protocol.encode(protocol.Window(stream_id, chunks)))
            case TunnelWsClose(code=code, reason=reason):
                self._forget(stream_id)
                await self._send_text(protocol.encode(protocol.WsClose(stream_id, code, reason)))
            case TunnelCancel(reason=reason):
                self._forget(stream_id)
                cancel = protocol.Cancel(stream=stream_id, reason=reason)
                await self._send_text(protocol.encode(cancel))
            case _:
                assert_never(message)

    async def _open_stream(self, message: TunnelOpen) -> None:
        stream_id = self._new_stream(message.reply, websocket=False)
        request = protocol.Request(
            stream=stream_id,
            method=message.method,
            path=message.path,
            headers=message.headers,
            body=message.body,
        )
        logger.debug(
            "tunnel %s: stream %d %s %s", self.subdomain, stream_id, request.method, request.path
        )
        await self._send_text(protocol.encode(request))

    async def _open_socket(self, message: TunnelWsOpen) -> None:
        stream_id = self._new_stream(message.reply, websocket=True)
        opening = protocol.WsOpen(
            stream=stream_id,
            path=message.path,
            headers=message.headers,
            subprotocols=list(message.subprotocols),
        )
        logger.debug("tunnel %s: stream %d WebSocket %s", self.subdomain, stream_id, opening.path)
        await self._send_text(protocol.encode(opening))

    async def _stream_data(self, stream_id: int, stream: _StreamState, message: TunnelData) -> None:
        self._bytes_in += len(message.data)
        # The view may send several chunks' worth in one message (see relay).
        chunks = split_chunks(message.data)
        stream.request.sent(len(chunks))
        for number, chunk in enumerate(chunks, 1):
            frame = protocol.Data(
                stream=stream_id, payload=chunk, end=message.end and number == len(chunks)
            )
            await self._send_bytes(protocol.encode_data(frame))

    async def _refuse_stream(self, stream_id: int, reason: str) -> None:
        """Fail one stream whose message the protocol refuses; the tunnel goes on."""
        logger.warning("tunnel %s: stream %d refused: %s", self.subdomain, stream_id, reason)
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._forget(stream_id)
        self._to_view(stream.reply, StreamError(ErrorKind.INVALID, reason))
        await self._send_text(protocol.encode(protocol.Cancel(stream=stream_id)))

    async def _body_lost(self, reply: str, exc: Exception) -> None:
        level = logging.WARNING if isinstance(exc, PayloadLost) else logging.ERROR
        logger.log(level, "tunnel %s: request body lost: %r", self.subdomain, exc)
        stream_id = self._by_reply.get(reply)
        if stream_id is None:
            return
        self._forget(stream_id)
        self._to_view(reply, StreamError(ErrorKind.LOST, "request body lost"))
        await self._send_text(protocol.encode(protocol.Cancel(stream=stream_id)))

    # -- lifetime ----------------------------------------------------------

    async def keep_alive(self) -> None:
        """Refresh the registry entry and recheck the token until the tunnel ends."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._timing.heartbeat)
            self._wake.clear()
            if self._ended:
                return  # released: never claim the subdomain again
            self._close_if_moved()
            if self.subdomain is None or self.token_id is None:
                continue
            if self._move_by is not None and self._clock() >= self._move_by:
                # Told to move and never replaced (the drain's deadline): its streams fail.
                raise SessionClosed(CloseCode.MOVED, "server process stopping")
            if self._moved:
                # Its place in the registry is its successor's; its live entry says
                # it still serves its streams (relay.stream.tunnel_gone).
                await live.publish(self._live_entry())
                continue
            if not await self._tokens.is_still_valid(self.token_id):
                logger.info("tunnel %s closed: token %s revoked", self.subdomain, self.token_label)
                await self._send_text(
                    protocol.encode(protocol.AuthError("token revoked", code=AuthRefusal.REVOKED))
                )
                raise SessionClosed(protocol.CloseCode.AUTH_FAILED, "token revoked")
            try:
                refreshed = await self._registry.refresh(
                    self.subdomain,
                    self.token_id,
                    self.channel,
                    self.policy,
                    self.rate_limit,
                    self._member,
                )
            except RegistryError as exc:
                outages.registry_refresh_failed.failed(exc)
                continue
            if refreshed is Refreshed.MOVED or (not refreshed and self._moved):
                # Its successor took the slot while this refresh was on its way (the
                # message saying so may still be): it moved, it did not lose the name.
                self._moved_away()
                await live.publish(self._live_entry())
                continue
            if not refreshed:
                logger.warning(
                    "tunnel %s: %s lost its place in the registry", self.subdomain, self.peer
                )
                raise SessionClosed(protocol.CloseCode.SUBDOMAIN_LOST, "subdomain lost")
            if self._counted:
                # Like the registry entry: a crashed process's tunnels stop counting.
                with contextlib.suppress(LimitsUnavailable):
                    await self._limits.stay(str(self.token_id), self.subdomain, live_ttl())
            await live.publish(self._live_entry())

    def _live_entry(self) -> live.LiveTunnel:
        assert self.subdomain is not None and self.token_id is not None
        return live.LiveTunnel(
            subdomain=self.subdomain,
            token_id=self.token_id,
            token_name=self._token_name,
            client=self.peer,
            since=self._since,
            requests=self._requests,
            bytes_in=self._bytes_in,
            bytes_out=self._bytes_out,
            rules=tuple(self.policy.describe()) if self.policy else (),
            channel=self.channel,
            node=settings.LUMINET_NODE,
        )

    @property
    def holds_tunnel(self) -> bool:
        """Whether a subdomain is live on this session (authenticated, not ended)."""
        return self.subdomain is not None and not self._ended

    async def ended(self) -> None:
        """Release the subdomain and fail every stream still open. Idempotent."""
        released_before, self._ended = self._ended, True
        drain.state.sessions.discard(self.channel)
        if self._streams and not released_before:
            logger.warning(
                "tunnel %s (%s): closing with %d streams open; they fail",
                self.subdomain,
                self.peer,
                len(self._streams),
            )
        if self.subdomain is not None:
            local_routes.drop(self.subdomain, self.channel)
        for stream in list(self._streams.values()):
            self._to_view(stream.reply, StreamError(ErrorKind.TUNNEL_CLOSED, "tunnel closed"))
        self._streams.clear()
        self._by_reply.clear()
        # Whatever the views have not been sent yet, then stop; a view that still
        # misses its message finds the tunnel gone on its own (relay.tunnel_gone).
        await self._outbox.flush(OUTBOX_FLUSH_TIMEOUT)
        await self._outbox.close()
        if self.subdomain is None or self.token_id is None or released_before:
            return
        last = await self._release(self.subdomain, self.token_id)
        await live.withdraw(self.subdomain, self.channel)
        if self._counted and not self._replaced and last:
            # A replaced tunnel's subdomain is counted for the connection that replaced
            # it; a tunnel with other connections still counts.
            with contextlib.suppress(LimitsUnavailable):
                await self._limits.leave(str(self.token_id), self.subdomain)
        logger.info(
            "tunnel %s closed (%s): %.0f s, %d requests, %d bytes in, %d bytes out",
            self.subdomain,
            self.peer,
            self._clock() - self._started,
            self._requests,
            self._bytes_in,
            self._bytes_out,
        )

    def _stream(self, stream_id: int, websocket: bool) -> _StreamState | None:
        """The open stream ``stream_id``, which must be of the kind the message needs."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.websocket != websocket:
            kind = "WebSocket" if stream.websocket else "HTTP"
            raise ProtocolError(f"stream {stream_id} is a {kind} stream")
        return stream

    def _new_stream(self, reply: str, websocket: bool) -> int:
        stream_id = self._next_stream
        self._next_stream += 1
        state = _StreamState(reply=reply, websocket=websocket)
        if not websocket:  # the same first window as the view's (client.protocol)
            state.request = SendWindow(initial=protocol.INITIAL_REQUEST_CHUNKS)
        self._streams[stream_id] = state
        self._by_reply[reply] = stream_id
        self._requests += 1
        return stream_id

    def _forget(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._by_reply.pop(stream.reply, None)

    def _to_view(self, reply: str, message: StreamMessage) -> None:
        self._outbox.put(reply, message)

    async def _view_lost(self, reply: str) -> None:
        # Windows make a full reply channel impossible for a live view; a dead one
        # is gone anyway.
        logger.error("tunnel %s: reply channel unusable, dropping stream", self.subdomain)
        stream_id = self._by_reply.get(reply)
        if stream_id is not None:
            self._forget(stream_id)
            with contextlib.suppress(Exception):  # the tunnel may be closing too
                await self._send_text(protocol.encode(protocol.Cancel(stream=stream_id)))
