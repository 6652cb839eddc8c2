"""Every channel-layer message between the edge and the tunnel consumer, typed.

Glossary:

- **tunnel channel**: the channel of the consumer that holds a client's tunnel
  WebSocket (``registry.lookup`` finds it for a subdomain).
- **reply channel**: the channel of one waiting view (HTTP) or public WebSocket
  consumer; it names the stream on the consumer's side (``reply`` below).
- **stream**: one request/response or one WebSocket, from the public side through
  the channel layer and the tunnel to the local server. On the wire it has a
  numeric id (``client.protocol``); on the channel layer, its reply channel.
- **leg**: one hop of a stream: public side <-> edge, edge <-> tunnel consumer
  (these messages), consumer <-> client (the wire protocol).

Messages to the tunnel channel are ``Tunnel*``; messages back to a reply channel
are ``Stream*``. ``to_layer()`` gives the dict the channel layer carries (its
``type`` picks the consumer's handler, as Channels does); ``from_layer()`` reads
one back. These dicts cross between our own processes only, so a malformed one is
a bug (KeyError), not input to validate.

Body payloads (``data``) may be moved aside on the way (``payloads``); windows
count wire chunks of at most ``CHUNK_SIZE``, and one message may carry several
(``chunks``), since each message costs a round trip on Redis.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, assert_never

from client.protocol import Headers


class ErrorKind(enum.StrEnum):
    """Why a stream failed; the edge answers each differently (``forwarding``)."""

    #: The client could not complete the exchange with the local server.
    LOCAL = "local-error"
    #: Nothing answered at the local address (the local server is not running).
    LOCAL_REFUSED = "local-refused"
    #: The tunnel ended (or its server process died) before the stream did.
    TUNNEL_CLOSED = "tunnel-closed"
    #: The tunnel's channel was full.
    BUSY = "tunnel-busy"
    #: Body bytes were lost on the way (a payload expired, Redis failed).
    LOST = "body-lost"
    #: The answer broke the protocol for its stream (an odd status, a bad close code).
    INVALID = "invalid-response"
    #: Redis (the registry or the channel layer) could not be reached.
    UNAVAILABLE = "unavailable"


# -- to the tunnel channel ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TunnelOpen:
    """Open an HTTP stream: the request head; ``body`` says whether data follows."""

    reply: str
    method: str
    path: str
    headers: Headers
    body: bool


@dataclass(frozen=True, slots=True)
class TunnelData:
    """Request body bytes (``chunks`` wire chunks' worth); ``end`` on the last."""

    reply: str
    data: bytes
    end: bool
    chunks: int


@dataclass(frozen=True, slots=True)
class TunnelWindow:
    """The edge consumed ``chunks`` chunks of the response (or WebSocket fragments)."""

    reply: str
    chunks: int


@dataclass(frozen=True, slots=True)
class TunnelCancel:
    """The public side went away (or gave up before a WebSocket handshake ended).

    ``reason`` when the server gave up (a timeout), for the client's console.
    """

    reply: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TunnelWsOpen:
    reply: str
    path: str
    headers: Headers
    subprotocols: list[str]


@dataclass(frozen=True, slots=True)
class TunnelWsFrame:
    """A fragment of a public WebSocket message."""

    reply: str
    data: bytes
    text: bool
    fin: bool


@dataclass(frozen=True, slots=True)
class TunnelWsClose:
    reply: str
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class TunnelReplaced:
    """A newer connection with the same token took this tunnel's subdomain; ``moved``
    when it is the same tunnel's connection taking this one's place (after ``move``,
    or a reconnection): then the client's other connections go on."""

    moved: bool = False


@dataclass(frozen=True, slots=True)
class TunnelMove:
    """This server process is stopping: the session tells its client to move."""

    seconds: float


@dataclass(frozen=True, slots=True)
class TunnelDisconnect:
    """The server's operator disconnects this tunnel (``tunnels.live.disconnect``)."""


@dataclass(frozen=True, slots=True)
class TunnelRefused:
    """The edge refused a public request by the tunnel's rules (for the client's console)."""

    method: str
    path: str
    status: int
    rule: str


# -- back to a reply channel ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamResponse:
    """The response head; with ``data`` set, the start of the body came with it."""

    status: int
    headers: Headers
    body: bool
    data: bytes | None = None
    end: bool = False
    chunks: int = 0


@dataclass(frozen=True, slots=True)
class StreamData:
    data: bytes
    end: bool
    chunks: int


@dataclass(frozen=True, slots=True)
class StreamWindow:
    """The client consumed ``chunks`` chunks of the request (or fragments)."""

    chunks: int


@dataclass(frozen=True, slots=True)
class StreamError:
    """The stream failed; nothing more comes on it."""

    kind: ErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class StreamWsAccept:
    subprotocol: str | None


@dataclass(frozen=True, slots=True)
class StreamWsReject:
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class StreamWsFrame:
    data: bytes
    text: bool
    fin: bool


@dataclass(frozen=True, slots=True)
class StreamWsClose:
    code: int | None
    reason: str


TunnelMessage = (
    TunnelOpen
    | TunnelData
    | TunnelWindow
    | TunnelCancel
    | TunnelWsOpen
    | TunnelWsFrame
    | TunnelWsClose
    | TunnelReplaced
    | TunnelMove
    | TunnelDisconnect
    | TunnelRefused
)
StreamMessage = (
    StreamResponse
    | StreamData
    | StreamWindow
    | StreamError
    | StreamWsAccept
    | StreamWsReject
    | StreamWsFrame
    | StreamWsClose
)
LayerMessage = TunnelMessage | StreamMessage

_TYPES: dict[type, str] = {
    TunnelOpen: "tunnel.open",
    TunnelData: "tunnel.data",
    TunnelWindow: "tunnel.window",
    TunnelCancel: "tunnel.cancel",
    TunnelWsOpen: "tunnel.ws_open",
    TunnelWsFrame: "tunnel.ws_frame",
    TunnelWsClose: "tunnel.ws_close",
    TunnelReplaced: "tunnel.replaced",
    TunnelMove: "tunnel.move",
    TunnelDisconnect: "tunnel.disconnect",
    TunnelRefused: "tunnel.refused",
    StreamResponse: "stream.response",
    StreamData: "stream.data",
    StreamWindow: "stream.window",
    StreamError: "stream.error",
    StreamWsAccept: "stream.ws_accept",
    StreamWsReject: "stream.ws_reject",
    StreamWsFrame: "stream.ws_frame",
    StreamWsClose: "stream.ws_close",
}
_CLASSES: dict[str, type] = {name: cls for cls, name in _TYPES.items()}


def to_layer(message: LayerMessage) -> dict[str, Any]:
    """The dict the channel layer carries for ``message``."""
    fields = {name: getattr(message, name) for name in message.__slots__}
    if isinstance(message, StreamResponse) and message.data is None:
        del fields["data"], fields["end"], fields["chunks"]
    return {"type": _TYPES[type(message)], **fields}


def from_layer(raw: dict[str, Any]) -> LayerMessage:
    """Read a channel-layer dict back into its message."""
    cls = _CLASSES[raw["type"]]
    fields = {name: value for name, value in raw.items() if name != "type"}
    if cls is StreamError:
        fields["kind"] = ErrorKind(fields["kind"])
    if "headers" in fields:
        # msgpack (channels-redis) turns tuples into lists.
        fields["headers"] = [(name, value) for name, value in fields["headers"]]
    message: LayerMessage = cls(**fields)
    return message


def stream_message(raw: dict[str, Any]) -> StreamMessage:
    """Read a message that came to a reply channel."""
    message = from_layer(raw)
    assert isinstance(
        message,
        (
            StreamResponse,
            StreamData,
            StreamWindow,
            StreamError,
            StreamWsAccept,
            StreamWsReject,
            StreamWsFrame,
            StreamWsClose,
        ),
    ), f"{raw['type']} on a reply channel"
    return message


def ends_stream(message: StreamMessage) -> bool:
    """Whether ``message`` is the last one on its reply channel."""
    match message:
        case StreamError() | StreamWsReject() | StreamWsClose():
            return True
        case StreamResponse():
            return not message.body or message.end
        case StreamData():
            return message.end
        case StreamWindow() | StreamWsAccept() | StreamWsFrame():
            return False
        case _:
            assert_never(message)
