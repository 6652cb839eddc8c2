"""The Luminet wire protocol: every message, frame layout and limit, with no I/O.

Both sides import this module (the server as ``client.protocol``); a JSON key or
frame-header layout written anywhere else is a bug. ``docs/protocol.md`` is the
prose version of this file.

Control messages travel as WebSocket text frames holding one JSON object with a
``type`` key. Body bytes travel as WebSocket binary frames::

    +--------+--------+----------------+----------------------+
    | kind:1 | flags:1| stream id:4 BE | payload (<= CHUNK)   |
    +--------+--------+----------------+----------------------+

Every stream-scoped message, text or binary, names its stream, so many requests
share one tunnel. Streams are opened by the server with ``request``; the sender
of body chunks may have at most ``WINDOW_CHUNKS`` chunks unacknowledged per
stream, and the receiver hands credit back with ``window`` as it consumes them.

Decoding raises only :class:`ProtocolError`.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .webhooks import parse_spec

#: 2: a request body starts with a window of INITIAL_REQUEST_CHUNKS (issue 8).
PROTOCOL_VERSION = 2

#: Body bytes per binary frame: well under daphne's 1 MiB WebSocket message cap.
CHUNK_SIZE = 64 * 1024
#: Unacknowledged chunks per stream and direction: bounds memory at 32 x 64 KiB per
#: stream per hop and keeps channel-layer queues below their capacity. A stream
#: moves at most a window per credit round trip (public side, channel layer, tunnel
#: WebSocket and back): on Redis 4 chunks gave 8 MB/s, 16 gave 52 and 32 gave 70-77
#: (docs/performance.md).
WINDOW_CHUNKS = 32
#: Request-body chunks the server may send for a stream before the client starts
#: serving it; the client widens the window to WINDOW_CHUNKS when a worker takes the
#: stream up. A stream queued behind busy workers so holds 64 KiB, not 2 MiB: 150
#: queued uploads took the client from 24 to 329 MB (issue 8, defect 6).
INITIAL_REQUEST_CHUNKS = 1
#: Body receivers return credit for this many chunks at a time (each credit is a
#: message, and on Redis a round trip); a quarter of the window keeps data flowing.
CREDIT_BATCH = WINDOW_CHUNKS // 4
#: Largest text frame we accept: generous for headers, small enough to refuse abuse.
MAX_CONTROL_BYTES = 256 * 1024
#: Total bytes of header names and values in one request or response.
MAX_HEADER_BYTES = 128 * 1024
MAX_HEADER_COUNT = 500
MAX_PATH_BYTES = 16 * 1024
#: Seconds a new tunnel WebSocket has to send ``auth`` before it is closed.
AUTH_TIMEOUT = 5.0
#: Largest stream id; ids are assigned by the server from 1 upwards.
MAX_STREAM_ID = 2**32 - 1

#: Generated subdomains: this many characters from SUBDOMAIN_ALPHABET.
SUBDOMAIN_LENGTH = 6
SUBDOMAIN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
#: A subdomain a client may ask for: one DNS label (RFC 1035 section 2.3.1) in
#: lower case, 3 to 63 letters, digits and inner hyphens. Generated names fit it.
SUBDOMAIN_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


def subdomain_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a subdomain to ask for, as a sentence; None if fine."""
    if not 3 <= len(name) <= 63:
        return "a subdomain has 3 to 63 characters"
    if name != name.lower():
        return "a subdomain is written in lower case"
    if not SUBDOMAIN_RE.fullmatch(name):
        return "a subdomain has only letters a-z, digits and hyphens, and no hyphen at either end"
    if name[2:4] == "--":
        # RFC 5891 section 4.2.3.1: reserved for IDNA ("xn--"): no name poses as punycode.
        return "a subdomain must not have hyphens as its third and fourth characters"
    return None


#: Rules one tunnel may set at the edge (``--basic-auth``, ``--allow-cidr``,
#: ``--deny-cidr``): plenty for a team, and few enough that checking each request
#: against them stays cheap.
MAX_CREDENTIALS = 16
#: Connections one client keeps for a tunnel, at most (``--connections``).
MAX_CONNECTIONS = 8
#: A client's tunnel id: random, URL-safe.
TUNNEL_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
#: Characters of a server process's name (``LUMINET_NODE``) at most.
MAX_NODE_NAME = 255
MAX_CIDRS = 64
#: Basic-auth passwords shorter than this are refused: the tunnel is public.
MIN_PASSWORD_LENGTH = 8
MAX_CREDENTIAL_LENGTH = 256


def credential_problem(credential: str) -> str | None:
    """What is wrong with ``user:password`` as a basic-auth rule, as a sentence; None if fine.

    The sentence never repeats the credential.
    """
    user, colon, password = credential.partition(":")
    if not colon or not user:
        return "basic auth is written user:password"
    # RFC 7617 section 2: the user-id cannot contain a colon; the password may.
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a basic-auth password has at least {MIN_PASSWORD_LENGTH} characters"
    if len(credential) > MAX_CREDENTIAL_LENGTH:
        return f"basic auth is at most {MAX_CREDENTIAL_LENGTH} characters"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in credential):
        return "basic auth has no control characters"
    return None


def cidr_problem(cidr: str) -> str | None:
    """What is wrong with ``cidr`` as an IP rule, as a sentence; None if fine.

    A bare address is its own /32 or /128; host bits are allowed (``10.1.2.3/8``
    means ``10.0.0.0/8``).
    """
    try:
        ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return f"{cidr[:60]!r} is not an IP network (e.g. 203.0.113.0/24 or 2001:db8::/32)"
    return None


def validate_rules(
    basic_auth: list[str] | tuple[str, ...],
    allow_cidrs: list[str] | tuple[str, ...],
    deny_cidrs: list[str] | tuple[str, ...],
) -> None:
    """Check a tunnel's rules; raise ProtocolError saying what is wrong with the first bad one."""
    if len(basic_auth) > MAX_CREDENTIALS:
        raise ProtocolError(f"at most {MAX_CREDENTIALS} basic-auth credentials per tunnel")
    for flag, cidrs in (("allow", allow_cidrs), ("deny", deny_cidrs)):
        if len(cidrs) > MAX_CIDRS:
            raise ProtocolError(f"at most {MAX_CIDRS} {flag} networks per tunnel")
        for cidr in cidrs:
            if (problem := cidr_problem(cidr)) is not None:
                raise ProtocolError(f"{flag} rule: {problem}")
    for credential in basic_auth:
        if (problem := credential_problem(credential)) is not None:
            raise ProtocolError(problem)


#: Webhook rules per tunnel (``--verify-webhook``): a few providers, and secrets
#: being rotated, with room to spare.
MAX_WEBHOOKS = 8


def validate_webhooks(specs: list[str] | tuple[str, ...]) -> None:
    """Check a tunnel's webhook rules (``client.webhooks`` syntax); raise ProtocolError
    saying what is wrong with the first bad one, never its secret."""
    if len(specs) > MAX_WEBHOOKS:
        raise ProtocolError(f"at most {MAX_WEBHOOKS} webhook rules per tunnel")
    for spec in specs:
        try:
            parse_spec(spec)
        except ValueError as exc:
            raise ProtocolError(f"webhook rule: {exc}") from None


class CloseCode(enum.IntEnum):
    """WebSocket close codes we send or act on (RFC 6455 section 7.4.1; ours are in the
    application range 4000-4999)."""

    NORMAL = 1000
    #: Never in a close frame: the close had no code.
    NO_STATUS = 1005
    #: Never in a close frame: the connection dropped without a closing handshake.
    ABNORMAL = 1006
    INVALID_PAYLOAD = 1007
    MESSAGE_TOO_BIG = 1009
    SERVER_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    #: Never in a close frame: the TLS handshake failed.
    TLS_HANDSHAKE = 1015
    PROTOCOL_ERROR = 4400
    AUTH_FAILED = 4401
    AUTH_TIMEOUT = 4408
    SUBDOMAIN_LOST = 4409
    #: A newer connection with the same token took this tunnel's subdomain over.
    REPLACED = 4410
    #: The server's operator disconnected the tunnel (the admin's live tunnels).
    DISCONNECTED = 4411
    #: A newer connection of the same tunnel took this one's place (after ``move``):
    #: the client's other connection goes on; nothing to reconnect.
    MOVED = 4412
    #: Refused before anything was routed to it (``node-avoided``, ``server-draining``):
    #: dial again, to reach another server process.
    ELSEWHERE = 4413


# Binary frame layout.
FRAME_HEADER = struct.Struct(">BBI")
FRAME_DATA = 0x01  # HTTP body bytes
FRAME_WS_TEXT = 0x02  # a fragment of a WebSocket text message (UTF-8 bytes)
FRAME_WS_BINARY = 0x03  # a fragment of a WebSocket binary message
#: On DATA: the last chunk of the body. On WS_*: the last fragment of the message.
FLAG_END_STREAM = 0x01
FLAG_FIN = 0x01
#: Largest WebSocket message relayed either way (reassembled from fragments).
MAX_WS_MESSAGE = 16 * 1024 * 1024

# RFC 9110 section 5.6.2: token = 1*tchar.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 section 5.5: field values are visible characters, spaces and tabs,
# plus obs-text (bytes 0x80-0xFF, carried here as latin-1 code points).
_FIELD_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Origin-form request target: visible ASCII only, no spaces or controls.
_PATH_RE = re.compile(r"/[\x21-\x7e]*")


class ProtocolError(Exception):
    """A peer sent something this protocol does not allow."""


class StreamRefused(ProtocolError):
    """A message for one stream that the protocol refuses: that stream fails, not the
    tunnel (a local server's odd status or close code is not the client misbehaving)."""

    def __init__(self, stream: int, reason: str) -> None:
        super().__init__(reason)
        self.stream = stream


@contextlib.contextmanager
def _only_stream(stream: int) -> Iterator[None]:
    try:
        yield
    except StreamRefused:
        raise
    except ProtocolError as exc:
        raise StreamRefused(stream, str(exc)) from exc


Headers = list[tuple[str, str]]
"""Header lines in order, names and values as latin-1 text (bytes 0-255 kept)."""


@dataclass(frozen=True)
class Auth:
    """Client -> server, first message: present a token, maybe ask for a subdomain.

    With ``required`` the client wants that subdomain or none (``--subdomain``);
    without, it is a preference (the name it had before), and the server picks
    another when it cannot be granted. ``resume`` says the client held it on the
    connection it lost: then it takes over its token's live tunnel there (the old
    connection is half-open); otherwise a live tunnel always keeps its name.

    ``basic_auth`` (``user:password``), ``allow_cidrs`` and ``deny_cidrs`` are the
    tunnel's rules at the edge (``validate_rules``). Passwords travel in plaintext
    inside the authenticated TLS WebSocket because the server must check what
    callers send; it keeps only salted digests of them.
    """

    token: str
    subdomain: str | None = None
    required: bool = False
    resume: bool = False
    version: int = PROTOCOL_VERSION
    basic_auth: tuple[str, ...] = ()
    allow_cidrs: tuple[str, ...] = ()
    deny_cidrs: tuple[str, ...] = ()
    #: ``PROVIDER:[OPTION:]SECRET`` (``client.webhooks``); the secret travels here
    #: only, because the server must compute each signature with it.
    webhooks: tuple[str, ...] = ()
    #: The client's id for this tunnel (``TUNNEL_ID_RE``), the same on each of its
    #: connections: a connection with the id of a live tunnel of the same token
    #: joins it (with the subdomain it asks for), as one more connection.
    tunnel: str = ""
    #: Which of the tunnel's connections this is (0 to ``MAX_CONNECTIONS`` - 1): a
    #: reconnecting one replaces its own stale predecessor, never another.
    slot: int = 0
    #: Share a ``required`` subdomain with other clients of the same token that
    #: ask for it with ``pool`` too: requests are spread over all of them.
    pool: bool = False
    #: Server processes (``AuthOk.node``) the tunnel's other connections are on: a
    #: process named here refuses this one (``NODE_AVOIDED``) before it serves
    #: anything, so the client dials again to reach another.
    avoid: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the token, passwords and secrets must never reach a log line
        providers = [spec.partition(":")[0] for spec in self.webhooks]
        return (
            f"Auth(subdomain={self.subdomain!r}, required={self.required}, "
            f"resume={self.resume}, version={self.version}, "
            f"basic_auth={len(self.basic_auth)} credentials, "
            f"allow_cidrs={self.allow_cidrs!r}, deny_cidrs={self.deny_cidrs!r}, "
            f"webhooks={providers!r}, tunnel={self.tunnel!r}, slot={self.slot}, "
            f"pool={self.pool})"
        )


@dataclass(frozen=True)
class AuthOk:
    """Server -> client: the tunnel is live at ``url``.

    ``rules`` names the rules the server applies at the edge (``basic auth``,
    ``allow 10.0.0.0/8``...): a client that asked for rules and finds them missing
    is talking to a server that does not know them, and must not go live.
    """

    subdomain: str
    url: str
    rules: tuple[str, ...] = ()
    #: The server process holding this connection: a client spreads its connections
    #: over processes by dialling again when one lands where another already is.
    node: str = ""


@dataclass(frozen=True)
class AuthError:
    """Server -> client: authentication failed; the server closes the socket next.

    ``retry`` says the failure is the server's, for now (Redis unreachable): the
    client reconnects with backoff instead of giving up on its token. ``code``
    says why, for programs (``AuthRefusal``); ``message`` says it for people.
    """

    message: str
    retry: bool = False
    code: str = ""


class AuthRefusal(enum.StrEnum):
    """The ``code`` of an ``auth_error``."""

    INVALID_TOKEN = "invalid-token"
    REVOKED = "token-revoked"
    SERVER_BUSY = "server-busy"
    #: The required subdomain: held by another token, live or in its grace period.
    SUBDOMAIN_TAKEN = "subdomain-taken"
    SUBDOMAIN_INVALID = "subdomain-invalid"
    #: On the server's block list (``LUMINET_BLOCKED_SUBDOMAINS``).
    SUBDOMAIN_BLOCKED = "subdomain-blocked"
    #: Reserved for another token by the operator.
    SUBDOMAIN_RESERVED = "subdomain-reserved"
    #: The token has ``LUMINET_TUNNELS_PER_TOKEN`` tunnels live already.
    TUNNEL_LIMIT = "tunnel-limit"
    #: The tunnel's rules cannot hold with its token's (allow lists with nothing in common).
    RULES_REFUSED = "rules-refused"
    #: This server process is one the client asked to avoid (``Auth.avoid``): it
    #: holds another connection of the tunnel. Dial again.
    NODE_AVOIDED = "node-avoided"
    #: This server process is stopping (``move``): dial again to reach another.
    DRAINING = "server-draining"


@dataclass(frozen=True)
class Request:
    """Server -> client: open stream ``stream`` with this request head.

    ``body`` says whether DATA frames follow (the last one flagged END_STREAM).
    """

    stream: int
    method: str
    path: str
    headers: Headers = field(default_factory=list)
    body: bool = False


@dataclass(frozen=True)
class Response:
    """Client -> server: the local server's response head for ``stream``."""

    stream: int
    status: int
    headers: Headers = field(default_factory=list)
    body: bool = False
    #: The first DATA frame of the body is already on its way right behind this
    #: head, so the server may hold the head for it and pass both on together.
    data_follows: bool = False


@dataclass(frozen=True)
class Window:
    """Either way: the receiver consumed ``chunks`` more chunks of ``stream``."""

    stream: int
    chunks: int


@dataclass(frozen=True)
class StreamError:
    """Client -> server: ``stream`` failed on the local side.

    Before a ``response`` the public client gets a 502 with ``message``; after it,
    the public response is aborted. ``refused`` says nothing answered at the local
    address at all (the local server is not running): a page of its own.
    """

    stream: int
    message: str
    refused: bool = False


@dataclass(frozen=True)
class Cancel:
    """Server -> client: the public side of ``stream`` went away; stop work on it.

    ``reason`` says why when it was the server that gave up (``"504: no response
    within 30 s"``), for the client's console; empty when the caller left.
    """

    stream: int
    reason: str = ""


@dataclass(frozen=True)
class WsOpen:
    """Server -> client: open stream ``stream`` as a WebSocket to the local server."""

    stream: int
    path: str
    headers: Headers = field(default_factory=list)
    subprotocols: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WsAccept:
    """Client -> server: the local server accepted the WebSocket."""

    stream: int
    subprotocol: str | None = None


@dataclass(frozen=True)
class WsReject:
    """Client -> server: the local server refused the handshake with this response."""

    stream: int
    status: int
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True)
class WsClose:
    """Either way: the WebSocket of ``stream`` closed with ``code`` and ``reason``.

    ``code`` None means no status code (1005); 1006 means the connection dropped
    without a closing handshake.
    """

    stream: int
    code: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Data:
    """Either way, as a binary frame: body bytes of ``stream``."""

    stream: int
    payload: bytes
    end: bool = False


@dataclass(frozen=True)
class WsFrame:
    """Either way, as a binary frame: a fragment of a WebSocket message of ``stream``."""

    stream: int
    payload: bytes
    text: bool = False
    fin: bool = True


@dataclass(frozen=True)
class Refused:
    """Server -> client: the edge refused a public request by one of the tunnel's rules,
    so it never reached the tunnel. For the console and inspector; the server sends
    at most ``REFUSALS_PER_SECOND`` of these per tunnel."""

    method: str
    path: str
    status: int
    rule: str


@dataclass(frozen=True)
class Move:
    """Server -> client: this server process is stopping. Open a replacement for this
    connection (it reaches another process), and this one closes (``MOVED``) once the
    replacement has taken its place and its streams have ended, within ``seconds``."""

    seconds: float


#: Refusal notices a tunnel is sent per second at most: a flood of refused requests
#: must not flood the tunnel too.
REFUSALS_PER_SECOND = 10
#: Characters of a refused request's path kept in its notice.
MAX_REFUSED_PATH = 2000


ControlMessage = (
    Auth
    | AuthOk
    | AuthError
    | Request
    | Response
    | Window
    | StreamError
    | Cancel
    | WsOpen
    | WsAccept
    | WsReject
    | WsClose
    | Refused
    | Move
)
BinaryMessage = Data | WsFrame
Message = ControlMessage | BinaryMessage
#: What each side may send (after bore's ClientMessage/ServerMessage): a message
#: of the other direction is a protocol error, refused in one place.
FromClient = Auth | Response | Window | StreamError | WsAccept | WsReject | WsClose
FromServer = AuthOk | AuthError | Request | Window | Cancel | WsOpen | WsClose | Refused | Move
_FROM_CLIENT = (Auth, Response, Window, StreamError, WsAccept, WsReject, WsClose)
_FROM_SERVER = (AuthOk, AuthError, Request, Window, Cancel, WsOpen, WsClose, Refused, Move)

_TYPE_NAMES: dict[type, str] = {
    Auth: "auth",
    AuthOk: "auth_ok",
    AuthError: "auth_error",
    Request: "request",
    Response: "response",
    Window: "window",
    StreamError: "error",
    Cancel: "cancel",
    WsOpen: "ws_open",
    WsAccept: "ws_accept",
    WsReject: "ws_reject",
    WsClose: "ws_close",
    Refused: "refused",
    Move: "move",
}


# ---------------------------------------------------------------------------
# Encoding


def encode(message: ControlMessage) -> str:
    """Return the text frame for a control message."""
    body: dict[str, Any] = {"type": _TYPE_NAMES[type(message)]}
    body.update(message.__dict__)
    if "headers" in body:
        body["headers"] = [list(pair) for pair in body["headers"]]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True)


def encode_data(message: BinaryMessage) -> bytes:
    """Return the binary frame for a body chunk or a WebSocket fragment."""
    if isinstance(message, Data):
        kind, flags = FRAME_DATA, FLAG_END_STREAM if message.end else 0
    else:
        kind = FRAME_WS_TEXT if message.text else FRAME_WS_BINARY
        flags = FLAG_FIN if message.fin else 0
    return FRAME_HEADER.pack(kind, flags, message.stream) + message.payload


# ---------------------------------------------------------------------------
# Decoding


def decode_data(frame: bytes) -> BinaryMessage:
    """Parse a binary frame."""
    if len(frame) < FRAME_HEADER.size:
        raise ProtocolError("binary frame shorter than its header")
    kind, flags, stream = FRAME_HEADER.unpack_from(frame)
    if kind not in (FRAME_DATA, FRAME_WS_TEXT, FRAME_WS_BINARY):
        raise ProtocolError(f"unknown binary frame kind {kind}")
    if flags & ~FLAG_END_STREAM:
        raise ProtocolError(f"unknown frame flags {flags:#x}")
    if len(frame) - FRAME_HEADER.size > CHUNK_SIZE:
        raise ProtocolError("chunk larger than CHUNK_SIZE")
    _check_stream(stream)
    payload = bytes(frame[FRAME_HEADER.size :])
    if kind == FRAME_DATA:
        return Data(stream, payload, bool(flags & FLAG_END_STREAM))
    return WsFrame(stream, payload, text=kind == FRAME_WS_TEXT, fin=bool(flags & FLAG_FIN))


def decode(text: str | bytes) -> ControlMessage:
    """Parse a text frame into a control message."""
    if len(text) > MAX_CONTROL_BYTES:
        raise ProtocolError("control message too large")
    try:
        raw = json.loads(text)
    except RecursionError as exc:  # "[" * 100000: the parser recurses per level
        raise ProtocolError("control message nests too deeply") from exc
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise ProtocolError("control message is not valid JSON") from exc
    if not isinstance(raw, dict):
        raise ProtocolError("control message is not a JSON object")
    kind = raw.get("type")
    match kind:
        case "auth":
            version = _int(raw, "version", default=PROTOCOL_VERSION)
            if version != PROTOCOL_VERSION:
                raise ProtocolError(f"unsupported protocol version {version}")
            token = _str(raw, "token")
            subdomain = _optional_str(raw, "subdomain")
            # A name too long for a DNS label is bad input; one that breaks the
            # naming rules is the session's to refuse, with a reason the user sees.
            if subdomain is not None and len(subdomain) > 63:
                raise ProtocolError("requested subdomain is longer than a DNS label")
            basic_auth = _strings(raw, "basic_auth", MAX_CREDENTIALS)
            allow_cidrs = _strings(raw, "allow_cidrs", MAX_CIDRS)
            deny_cidrs = _strings(raw, "deny_cidrs", MAX_CIDRS)
            validate_rules(basic_auth, allow_cidrs, deny_cidrs)
            webhooks = _strings(raw, "webhooks", MAX_WEBHOOKS)
            validate_webhooks(webhooks)
            tunnel = _optional_str(raw, "tunnel") or ""
            if tunnel and not TUNNEL_ID_RE.fullmatch(tunnel):
                raise ProtocolError("'tunnel' must be 8 to 64 letters, digits, '-' or '_'")
            slot = _int(raw, "slot", default=0)
            if not 0 <= slot < MAX_CONNECTIONS:
                raise ProtocolError(f"'slot' must be from 0 to {MAX_CONNECTIONS - 1}")
            pool = _bool(raw, "pool")
            if pool and not (subdomain and _bool(raw, "required")):
                raise ProtocolError("'pool' needs a required subdomain")
            avoid = _strings(raw, "avoid", MAX_CONNECTIONS)
            if any(len(node) > MAX_NODE_NAME for node in avoid):
                raise ProtocolError(f"a node name is longer than {MAX_NODE_NAME} characters")
            return Auth(
                token=token,
                subdomain=subdomain,
                required=_bool(raw, "required"),
                resume=_bool(raw, "resume"),
                version=version,
                basic_auth=basic_auth,
                allow_cidrs=allow_cidrs,
                deny_cidrs=deny_cidrs,
                webhooks=webhooks,
                tunnel=tunnel,
                slot=slot,
                pool=pool,
                avoid=avoid,
            )
        case "auth_ok":
            return AuthOk(
                subdomain=_str(raw, "subdomain"),
                url=_str(raw, "url"),
                rules=_strings(raw, "rules", 4 * MAX_CIDRS),
                node=_optional_str(raw, "node") or "",
            )
        case "auth_error":
            return AuthError(
                message=_str(raw, "message"),
                retry=_bool(raw, "retry"),
                code=_optional_str(raw, "code") or "",
            )
        case "request":
            method = _str(raw, "method")
            path = _str(raw, "path")
            validate_target(method, path)
            return Request(
                stream=_stream(raw),
                method=method,
                path=path,
                headers=_headers(raw),
                body=_bool(raw, "body"),
            )
        case "response":
            stream = _stream(raw)
            with _only_stream(stream):
                status = _int(raw, "status")
                # 1xx heads are interim: the client consumes them, only final ones travel.
                if not 200 <= status <= 599:
                    raise ProtocolError("response status out of range")
                body = _bool(raw, "body")
                data_follows = _bool(raw, "data_follows")
                if data_follows and not body:
                    raise ProtocolError("data_follows on a response without a body")
                headers = _headers(raw)
            return Response(stream, status, headers, body, data_follows)
        case "window":
            chunks = _int(raw, "chunks")
            if not 1 <= chunks <= WINDOW_CHUNKS:
                raise ProtocolError("window increment out of range")
            return Window(stream=_stream(raw), chunks=chunks)
        case "error":
            stream = _stream(raw)
            with _only_stream(stream):
                return StreamError(
                    stream=stream,
                    message=_str(raw, "message")[:500],
                    refused=_bool(raw, "refused"),
                )
        case "cancel":
            return Cancel(stream=_stream(raw), reason=(_optional_str(raw, "reason") or "")[:200])
        case "ws_open":
            path = _str(raw, "path")
            validate_target("GET", path)
            subprotocols = raw.get("subprotocols", [])
            if not (
                isinstance(subprotocols, list)
                and len(subprotocols) <= 64
                and all(isinstance(p, str) and _TOKEN_RE.fullmatch(p) for p in subprotocols)
            ):
                raise ProtocolError("subprotocols must be a list of tokens")
            return WsOpen(
                stream=_stream(raw), path=path, headers=_headers(raw), subprotocols=subprotocols
            )
        case "ws_accept":
            stream = _stream(raw)
            with _only_stream(stream):
                subprotocol = _optional_str(raw, "subprotocol")
                if subprotocol is not None and not _TOKEN_RE.fullmatch(subprotocol):
                    raise ProtocolError("subprotocol must be a token")
            return WsAccept(stream=stream, subprotocol=subprotocol)
        case "ws_reject":
            stream = _stream(raw)
            with _only_stream(stream):
                status = _int(raw, "status")
                # A refusal is a final answer that is not a success (RFC 6455 section 4.1).
                if not 300 <= status <= 599:
                    raise ProtocolError("refusal status must be 300-599")
                headers = _headers(raw)
            return WsReject(stream=stream, status=status, headers=headers)
        case "ws_close":
            stream = _stream(raw)
            with _only_stream(stream):
                code = raw.get("code")
                if code is not None and not (
                    isinstance(code, int) and not isinstance(code, bool) and is_close_code(code)
                ):
                    raise ProtocolError("close code not allowed in a close frame")
                reason = _str(raw, "reason") if "reason" in raw else ""
                try:
                    # RFC 6455 section 5.5: a close frame's payload is at most 125 bytes,
                    # and its reason UTF-8 (no lone surrogates).
                    encoded = reason.encode("utf-8")
                except UnicodeEncodeError:
                    raise ProtocolError("close reason is not valid UTF-8") from None
                if len(encoded) > MAX_CLOSE_REASON_BYTES:
                    raise ProtocolError("close reason longer than 123 bytes")
            return WsClose(stream=stream, code=code, reason=reason)
        case "refused":
            status = _int(raw, "status")
            if not 400 <= status <= 599:
                raise ProtocolError("refusal status must be 400-599")
            return Refused(
                method=_str(raw, "method")[:32],
                path=_str(raw, "path")[:MAX_REFUSED_PATH],
                status=status,
                rule=_str(raw, "rule")[:200],
            )
        case "move":
            seconds = raw.get("seconds")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
                raise ProtocolError("'seconds' must be a number of seconds")
            return Move(seconds=float(seconds))
        case _:
            raise ProtocolError(f"unknown message type {kind!r}")


def is_close_code(code: int) -> bool:
    """Whether ``code`` may stand in a ``ws_close`` (RFC 6455 section 7.4).

    1005 is written as no code at all; 1006 (the connection dropped) is allowed as
    the one code that never goes into a close frame itself; 1004, 1015 and
    1016-2999 are reserved.
    """
    return code in _DEFINED_CLOSE_CODES or 3000 <= code <= 4999


_DEFINED_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1006, *range(1007, 1015)})
#: RFC 6455 section 5.5: a close frame's payload is at most 125 bytes, 2 of them the code.
MAX_CLOSE_REASON_BYTES = 123


def close_fields(code: int | None, reason: str) -> tuple[int | None, str]:
    """A close as a ``ws_close`` may carry it, from whatever a WebSocket library said.

    1005 and codes a close frame may not hold become None (no code); the reason is
    cut to 123 bytes of UTF-8 on a character boundary.
    """
    if code is not None and (code == CloseCode.NO_STATUS or not is_close_code(code)):
        code = None
    data = reason.encode("utf-8", "replace")[:MAX_CLOSE_REASON_BYTES]
    return code, data.decode("utf-8", "ignore")


def decode_from_client(text: str | bytes) -> FromClient:
    """Parse a text frame the server received; a server-only message is refused."""
    message = decode(text)
    if not isinstance(message, _FROM_CLIENT):
        raise ProtocolError(f"{_TYPE_NAMES[type(message)]} is sent by the server only")
    return message


def decode_from_server(text: str | bytes) -> FromServer:
    """Parse a text frame the client received; a client-only message is refused."""
    message = decode(text)
    if not isinstance(message, _FROM_SERVER):
        raise ProtocolError(f"{_TYPE_NAMES[type(message)]} is sent by the client only")
    return message


def validate_target(method: str, path: str) -> None:
    """Check a method and an origin-form request target (RFC 9112 section 3.2.1).

    A target that is not origin-form (an absolute URL, ``host:port``) is refused, so
    nothing sent over the tunnel can name another host to the client.
    """
    if not _TOKEN_RE.fullmatch(method):
        raise ProtocolError("request method is not a valid token")
    if len(path) > MAX_PATH_BYTES:
        raise ProtocolError("request path too long")
    if not (_PATH_RE.fullmatch(path) or (path == "*" and method == "OPTIONS")):
        raise ProtocolError("request path is not an origin-form target")


def validate_headers(headers: Any) -> Headers:
    """Check a header list as it would arrive in a message and return it as tuples."""
    if not isinstance(headers, list) or len(headers) > MAX_HEADER_COUNT:
        raise ProtocolError("headers must be a list of at most MAX_HEADER_COUNT pairs")
    result: Headers = []
    total = 0
    for pair in headers:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ProtocolError("each header must be a [name, value] pair")
        name, value = pair
        if not (isinstance(name, str) and isinstance(value, str)):
            raise ProtocolError("header names and values must be strings")
        if not _TOKEN_RE.fullmatch(name):
            raise ProtocolError("header name is not a valid token")
        if not _FIELD_VALUE_RE.fullmatch(value):
            raise ProtocolError(f"header {name!r} has a forbidden character")
        total += len(name) + len(value)
        result.append((name, value))
    if total > MAX_HEADER_BYTES:
        raise ProtocolError("headers too large")
    return result


def _headers(raw: dict[str, Any]) -> Headers:
    return validate_headers(raw.get("headers", []))


def _stream(raw: dict[str, Any]) -> int:
    stream = _int(raw, "stream")
    _check_stream(stream)
    return stream


def _check_stream(stream: int) -> None:
    if not 1 <= stream <= MAX_STREAM_ID:
        raise ProtocolError("stream id out of range")


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{key!r} must be a string")
    return value


def _optional_str(raw: dict[str, Any], key: str) -> str | None:
    if raw.get(key) is None:
        return None
    return _str(raw, key)


def _strings(raw: dict[str, Any], key: str, limit: int) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        raise ProtocolError(f"{key!r} must be a list of strings")
    if len(value) > limit:
        raise ProtocolError(f"{key!r} has more than {limit} entries")
    return tuple(value)


def _int(raw: dict[str, Any], key: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    # bool is an int subclass; true is not a status code.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{key!r} must be an integer")
    return value


def _bool(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"{key!r} must be a boolean")
    return value


# ---------------------------------------------------------------------------
# Headers shared by both sides

#: Hop-by-hop fields (RFC 9110 section 7.6.1): they describe one connection, so a
#: proxy neither forwards nor copies them. Framing is redone on each hop.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


#: Fields a ``Connection`` header cannot make hop-by-hop: ``Connection: close, Host``
#: would otherwise strip the Host the local server routes by.
NEVER_HOP_BY_HOP = frozenset({"host"})


def end_to_end(headers: Headers) -> Headers:
    """Drop hop-by-hop fields, including any a ``Connection`` header names."""
    named = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == "connection":
            named.update(part.strip().lower() for part in value.split(","))
    named -= NEVER_HOP_BY_HOP
    return [(name, value) for name, value in headers if name.lower() not in named]


def header_values(headers: Headers, name: str) -> list[str]:
    """Return every value of ``name`` (case-insensitive), in order."""
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


#: Longest Content-Length we read: 19 digits is more than any body (and than an int64).
_LENGTH_RE = re.compile(r"[0-9]{1,19}")


def declared_length(headers: Headers) -> int | None:
    """The body length that ``Content-Length`` declares, or None without one.

    RFC 9110 section 8.6: a list of identical values (``5, 5`` or two lines) is one
    length; anything else (different values, signs, spaces inside, junk) leaves the
    framing unknowable, and a proxy passing it on would desynchronise the connection
    behind it. Raises ProtocolError for those.
    """
    values = header_values(headers, "content-length")
    if not values:
        return None
    lengths = {part.strip() for value in values for part in value.split(",")}
    if len(lengths) != 1:
        raise ProtocolError("conflicting Content-Length values")
    (length,) = lengths
    if not _LENGTH_RE.fullmatch(length):
        raise ProtocolError("invalid Content-Length")
    return int(length)


def is_chunked(headers: Headers) -> bool:
    """Tell whether a message's framing is chunked transfer coding (RFC 9112 section 6.1)."""
    codings = ",".join(header_values(headers, "transfer-encoding"))
    return "chunked" in [part.strip().lower() for part in codings.split(",")]
