"""What the client does, as records handed to observers (after mitmproxy's HTTP hooks).

Every public HTTP request is an :class:`ExchangeRecord` and every public
WebSocket a :class:`SocketRecord`. The code that runs them reports through one
:class:`Events`, which stamps the times, hands the records to each
:class:`Observer` and ends every record exactly once::

    exchange_started -> [response_started] -> exchange_finished | exchange_failed
    websocket_opened -> [websocket_accepted] -> websocket_closed | websocket_failed

whatever happens: a local error, a cancel by the public side, a lost tunnel or
a bug. Observers run on the tunnel's threads, so they must return quickly; one
that raises is logged and ignored, never allowed to break a stream.

Body bytes reach only observers that set ``taps_bodies``. With none, callers
skip the tap after one attribute check (``Events.tapping``), so it costs no
call and no copy per chunk.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from . import protocol
from .protocol import Headers

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class Failure(enum.Enum):
    """Why an exchange or a WebSocket ended without completing."""

    #: The local server was unreachable, refused, failed or sent something invalid.
    LOCAL_ERROR = "local_error"
    #: The local server answered the WebSocket handshake with a refusal.
    REFUSED = "refused"
    #: The public side went away, or the server gave up waiting (504).
    CANCELLED = "cancelled"
    #: The connection to the server dropped.
    TUNNEL_LOST = "tunnel_lost"
    #: A bug in the client.
    CLIENT_ERROR = "client_error"


#: What the console and the JSON lines say when nothing more specific is known.
FAILURE_TEXT = {
    Failure.LOCAL_ERROR: "local error",
    Failure.REFUSED: "refused",
    Failure.CANCELLED: "cancelled",
    Failure.TUNNEL_LOST: "tunnel lost",
    Failure.CLIENT_ERROR: "client error",
}


@dataclass(eq=False, kw_only=True)
class StreamRecord:
    """What every stream's record holds. Times are ``Events``' clock (monotonic seconds).

    ``bytes_in`` counts body or message bytes from the public side that reached the
    local server, ``bytes_out`` those from the local server sent to the public side.
    """

    stream: int
    path: str
    #: The name of the tunnel it came through (``Events.name``).
    tunnel: str = ""
    #: Header values may be secrets (Authorization, Cookie): never in any output.
    request_headers: Headers = field(default_factory=list, repr=False)
    started: float = 0.0
    #: Seconds since the epoch at ``started``, for display.
    wall_started: float = 0.0
    ended: float | None = None
    failure: Failure | None = None
    reason: str = ""
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def ms(self) -> float | None:
        """Milliseconds from start to end, once ended."""
        return None if self.ended is None else (self.ended - self.started) * 1000


@dataclass(eq=False, kw_only=True)
class ExchangeRecord(StreamRecord):
    """One public HTTP request and what became of it."""

    method: str
    status: int | None = None
    response_headers: Headers = field(default_factory=list, repr=False)
    response_at: float | None = None
    outcome: Literal["finished", "failed"] | None = None
    #: The rule that refused it at the edge: it never reached this client's local server.
    edge_rule: str = ""

    @classmethod
    def from_request(cls, request: protocol.Request) -> ExchangeRecord:
        return cls(
            stream=request.stream,
            method=request.method,
            path=request.path,
            request_headers=request.headers,
        )


@dataclass(eq=False, kw_only=True)
class SocketRecord(StreamRecord):
    """One public WebSocket and what became of it."""

    subprotocols: list[str] = field(default_factory=list)
    #: The subprotocol the local server chose, once it accepted.
    subprotocol: str | None = None
    accepted_at: float | None = None
    outcome: Literal["closed", "failed"] | None = None
    #: The close code that ended it (None: a close without a code; 1006: dropped).
    code: int | None = None
    closed_by: Literal["public", "local"] | None = None
    messages_in: int = 0
    messages_out: int = 0

    @classmethod
    def from_opening(cls, opening: protocol.WsOpen) -> SocketRecord:
        return cls(
            stream=opening.stream,
            path=opening.path,
            request_headers=opening.headers,
            subprotocols=opening.subprotocols,
        )


#: The name of the tunnel of ``--port 3000``: ngrok's name for the tunnel of
#: ``ngrok http 3000``, which scripts reading the agent API look for.
COMMAND_LINE = "command_line"


@dataclass(frozen=True)
class TunnelUp:
    """A tunnel that has just come up (or back up, after a reconnection)."""

    #: Its name: ``command_line``, ``http-PORT`` with several ``--port``, or the config file's.
    name: str
    url: str
    subdomain: str
    local_origin: str
    #: The tunnel WebSocket's URL.
    server: str
    #: Seconds of a WebSocket ping's round trip to the server, if one came back in time.
    latency: float | None = None
    #: ``--host-header``: preserve, rewrite or a value.
    host_header: str = "preserve"
    #: The rules the server applies at the edge, as it named them (``auth_ok``).
    rules: tuple[str, ...] = ()


class Observer:
    """Watches the tunnels: override the hooks you need; the others do nothing.

    The hooks about a whole tunnel get its name first; a stream's record has it
    in ``record.tunnel``.
    """

    #: Set to receive body bytes and WebSocket messages (one call per chunk or message).
    taps_bodies: ClassVar[bool] = False

    def tunnel_active(self, tunnel: TunnelUp) -> None:
        """The tunnel is up at ``tunnel.url`` and forwards to ``tunnel.local_origin``."""

    def subdomain_changed(self, name: str, previous: str, subdomain: str) -> None:
        """After a reconnection, ``previous`` was taken; the tunnel now has ``subdomain``."""

    def tunnel_down(self, name: str, reason: str, retry_in: float) -> None:
        """The tunnel is down; the client reconnects in ``retry_in`` seconds."""

    def connect_failed(self, name: str, reason: str, retry_in: float) -> None:
        """The tunnel has not come up yet: the server could not be reached or refused
        for now; the client tries again in ``retry_in`` seconds."""

    def local_unreachable(self, name: str, local_origin: str, reason: str) -> None:
        """Nothing answers at the local address (checked when the tunnel comes up)."""

    def latency(self, name: str, seconds: float) -> None:
        """A ping to the server came back after ``seconds`` (every ``PING_INTERVAL``)."""

    def refused_at_edge(self, name: str, method: str, path: str, status: int, rule: str) -> None:
        """The server refused a public request by the tunnel's ``rule``; it never came here."""

    def exchange_started(self, record: ExchangeRecord) -> None:
        """A request head arrived."""

    def response_started(self, record: ExchangeRecord) -> None:
        """The local server's response head went to the public side."""

    def exchange_finished(self, record: ExchangeRecord) -> None:
        """The whole response went to the public side."""

    def exchange_failed(self, record: ExchangeRecord, reason: str) -> None:
        """The exchange ended without a complete response; ``record.failure`` says why."""

    def request_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        """The local server took ``chunk`` of the request body (with ``taps_bodies``)."""

    def response_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        """``chunk`` of the response body went to the public side (with ``taps_bodies``)."""

    def websocket_opened(self, record: SocketRecord) -> None:
        """A public WebSocket handshake arrived."""

    def websocket_accepted(self, record: SocketRecord) -> None:
        """The local server accepted the WebSocket."""

    def websocket_closed(self, record: SocketRecord) -> None:
        """The WebSocket closed; ``record.closed_by`` and ``record.code`` say how."""

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        """The WebSocket never opened or was cut off; ``record.failure`` says why."""

    def websocket_message(
        self, record: SocketRecord, data: bytes, text: bool, from_public: bool
    ) -> None:
        """A whole message crossed the tunnel (with ``taps_bodies``)."""


class Events:
    """Hands one tunnel's records to observers; stamps times and the tunnel's name;
    ends each record exactly once. ``named`` gives another tunnel's, to the same
    observers.

    Thread-safe: the tunnel's reader thread, its workers and the WebSocket
    threads all report here.
    """

    def __init__(
        self,
        observers: Iterable[Observer] = (),
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        name: str = COMMAND_LINE,
    ) -> None:
        self.name = name
        self._observers = tuple(observers)
        self._taps = tuple(o for o in self._observers if o.taps_bodies)
        #: Whether any observer taps bodies: callers check this before each tap.
        self.tapping = bool(self._taps)
        self._clock = clock
        self._wall_clock = wall_clock
        self._end_lock = threading.Lock()
        self._complained: set[str] = set()

    def named(self, name: str) -> Events:
        """The events of the tunnel ``name``, handed to the same observers."""
        return Events(self._observers, self._clock, self._wall_clock, name)

    # -- the tunnel ----------------------------------------------------------

    def tunnel_active(
        self,
        url: str,
        subdomain: str,
        local_origin: str,
        server: str = "",
        latency: float | None = None,
        host_header: str = "preserve",
        rules: tuple[str, ...] = (),
    ) -> None:
        up = TunnelUp(self.name, url, subdomain, local_origin, server, latency, host_header, rules)
        for observer in self._observers:
            self._call(observer.tunnel_active, up)

    def subdomain_changed(self, previous: str, subdomain: str) -> None:
        for observer in self._observers:
            self._call(observer.subdomain_changed, self.name, previous, subdomain)

    def tunnel_down(self, reason: str, retry_in: float) -> None:
        for observer in self._observers:
            self._call(observer.tunnel_down, self.name, reason, retry_in)

    def connect_failed(self, reason: str, retry_in: float) -> None:
        for observer in self._observers:
            self._call(observer.connect_failed, self.name, reason, retry_in)

    def local_unreachable(self, local_origin: str, reason: str) -> None:
        for observer in self._observers:
            self._call(observer.local_unreachable, self.name, local_origin, reason)

    def latency(self, seconds: float) -> None:
        for observer in self._observers:
            self._call(observer.latency, self.name, seconds)

    def refused_at_edge(self, method: str, path: str, status: int, rule: str) -> None:
        for observer in self._observers:
            self._call(observer.refused_at_edge, self.name, method, path, status, rule)

    # -- HTTP exchanges ------------------------------------------------------

    def exchange_started(self, record: ExchangeRecord) -> None:
        record.tunnel = self.name
        record.started = self._clock()
        record.wall_started = self._wall_clock()
        for observer in self._observers:
            self._call(observer.exchange_started, record)

    def response_started(self, record: ExchangeRecord, status: int, headers: Headers) -> None:
        record.status = status
        record.response_headers = headers
        record.response_at = self._clock()
        for observer in self._observers:
            self._call(observer.response_started, record)

    def request_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        for observer in self._taps:
            self._call(observer.request_body, record, chunk)

    def response_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        for observer in self._taps:
            self._call(observer.response_body, record, chunk)

    def exchange_finished(self, record: ExchangeRecord) -> bool:
        """End ``record`` as finished; False if it had ended already."""
        with self._end_lock:
            if record.outcome is not None:
                return False
            record.outcome = "finished"
            record.ended = self._clock()
        for observer in self._observers:
            self._call(observer.exchange_finished, record)
        return True

    def exchange_failed(self, record: ExchangeRecord, failure: Failure, reason: str = "") -> bool:
        """End ``record`` as failed; False if it had ended already."""
        reason = self._fail(record, failure, reason)
        if not reason:
            return False
        for observer in self._observers:
            self._call(observer.exchange_failed, record, reason)
        return True

    def _fail(self, record: ExchangeRecord | SocketRecord, failure: Failure, reason: str) -> str:
        """Mark ``record`` failed and return the reason; "" if it had ended already."""
        reason = reason or FAILURE_TEXT[failure]
        with self._end_lock:
            if record.outcome is not None:
                return ""
            record.outcome = "failed"
            record.failure = failure
            record.reason = reason
            record.ended = self._clock()
        return reason

    # -- WebSockets ----------------------------------------------------------

    def websocket_opened(self, record: SocketRecord) -> None:
        record.tunnel = self.name
        record.started = self._clock()
        record.wall_started = self._wall_clock()
        for observer in self._observers:
            self._call(observer.websocket_opened, record)

    def websocket_accepted(self, record: SocketRecord, subprotocol: str | None) -> None:
        record.subprotocol = subprotocol
        record.accepted_at = self._clock()
        for observer in self._observers:
            self._call(observer.websocket_accepted, record)

    def websocket_message(
        self, record: SocketRecord, data: bytes, text: bool, from_public: bool
    ) -> None:
        for observer in self._taps:
            self._call(observer.websocket_message, record, data, text, from_public)

    def websocket_closed(
        self, record: SocketRecord, code: int | None, closed_by: Literal["public", "local"]
    ) -> bool:
        """End ``record`` as closed; False if it had ended already."""
        with self._end_lock:
            if record.outcome is not None:
                return False
            record.outcome = "closed"
            record.code = code
            record.closed_by = closed_by
            record.ended = self._clock()
        for observer in self._observers:
            self._call(observer.websocket_closed, record)
        return True

    def websocket_failed(self, record: SocketRecord, failure: Failure, reason: str = "") -> bool:
        """End ``record`` as failed; False if it had ended already."""
        reason = self._fail(record, failure, reason)
        if not reason:
            return False
        for observer in self._observers:
            self._call(observer.websocket_failed, record, reason)
        return True

    # -- calling observers ---------------------------------------------------

    def _call(self, hook: Callable[..., None], *args: object) -> None:
        """Call one observer's hook; an observer that raises is logged and ignored."""
        try:
            hook(*args)
        except Exception:
            name = getattr(hook, "__qualname__", repr(hook))
            if name in self._complained:  # once with its traceback is enough
                logger.debug("observer hook %s failed again", name)
            else:
                self._complained.add(name)
                logger.exception("observer hook %s failed; the tunnel goes on", name)
