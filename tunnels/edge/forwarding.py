"""Translate between Django requests/responses and tunnel stream heads, faithfully."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookies import SimpleCookie

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from client import protocol
from client.protocol import Headers, ProtocolError
from tunnels.limits import RateLimited
from tunnels.relay.errors import (
    BodyLost,
    InvalidResponse,
    LocalServerError,
    LocalServerRefused,
    TunnelBusy,
    TunnelClosed,
    TunnelError,
    TunnelNotFound,
    TunnelTimeout,
    Unavailable,
)
from tunnels.relay.stream import RequestHead, ResponseHead, Stream

from .rules import AddressRefused, AuthRequired

# Headers this proxy sets itself (after dropping what the public client sent).
_REPLACED = frozenset({"x-forwarded-proto", "x-forwarded-host"})
# Claims about the public client's address, scheme or host that only a proxy we
# trust could make; from a public client they are dropped, not passed on.
_UNTRUSTED = frozenset(
    {
        "forwarded",
        "x-real-ip",
        "x-forwarded-port",
        "x-forwarded-server",
        "x-forwarded-scheme",
        "x-forwarded-ssl",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-cluster-client-ip",
        "x-original-forwarded-for",
    }
)
# Responses that never carry a body (RFC 9110 sections 6.4.1, 9.3.2).
_BODYLESS_STATUSES = {204, 304}


class InvalidRequest(Exception):
    """The public request cannot be expressed on the tunnel (e.g. a malformed target)."""


class BodyMismatch(TunnelError):
    """The body from the tunnel is longer or shorter than its declared Content-Length."""


@dataclass(frozen=True)
class ResponseFraming:
    """How the public response is framed: the header lines to send and the body length."""

    headers: Headers
    #: Declared Content-Length, or None when the server frames the body itself.
    length: int | None


def response_framing(head: ResponseHead) -> ResponseFraming:
    """Check the framing of a response head from the tunnel and build the public one.

    The tunnel client may be hostile: a Content-Length it declares is the one thing
    that tells the public client, or a proxy pooling connections in front of us,
    where this response ends. So exactly one valid length or none (RFC 9110 section
    8.6); with Transfer-Encoding as well, the length is dropped and the body framed
    by us (RFC 9112 section 6.3). Raises InvalidResponse.
    """
    received = head.headers
    headers = protocol.end_to_end(received)
    if protocol.header_values(received, "transfer-encoding"):
        return ResponseFraming(_without(headers, "content-length"), None)
    try:
        length = protocol.declared_length(headers)
    except ProtocolError as exc:
        raise InvalidResponse(str(exc)) from exc
    if length is not None and len(protocol.header_values(headers, "content-length")) > 1:
        # One line of the agreed length, where the first of them stood.
        first = next(i for i, (n, _) in enumerate(headers) if n.lower() == "content-length")
        name = headers[first][0]
        headers = _without(headers, "content-length")
        headers.insert(first, (name, str(length)))
    return ResponseFraming(headers, length)


def _without(headers: Headers, name: str) -> Headers:
    return [pair for pair in headers if pair[0].lower() != name]


def forwarded(scope: dict, method: str, drop: frozenset[str] = frozenset()) -> tuple[str, Headers]:
    """Return the raw target and the headers to send on for an ASGI scope.

    Hop-by-hop fields and ``drop`` go. The forwarding headers follow one policy
    (README, "What the local server receives"): what a public client says about
    itself is not trusted, so ``Forwarded``, ``X-Real-IP`` and the other
    ``_UNTRUSTED`` fields are dropped and X-Forwarded-Proto and -Host are set by
    us; X-Forwarded-For keeps the chain the client sent and gains the address we
    saw, the right-most entry being the one we vouch for. Raises InvalidRequest if
    the result cannot travel on the tunnel.
    """
    path = scope.get("raw_path") or scope["path"].encode()
    target = path.decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    received = received_headers(scope)
    unwanted = _REPLACED | _UNTRUSTED | drop
    headers = [pair for pair in protocol.end_to_end(received) if pair[0].lower() not in unwanted]
    forwarded_for = [v for n, v in headers if n.lower() == "x-forwarded-for"]
    headers = [pair for pair in headers if pair[0].lower() != "x-forwarded-for"]
    client = scope.get("client")
    if client:
        forwarded_for.append(str(client[0]))
    if forwarded_for:
        headers.append(("x-forwarded-for", ", ".join(forwarded_for)))
    headers.append(("x-forwarded-proto", settings.LUMINET_PUBLIC_SCHEME))
    host = protocol.header_values(received, "host")
    if host:
        headers.append(("x-forwarded-host", host[0]))
    try:
        protocol.validate_target(method, target)
        protocol.validate_headers(headers)
    except ProtocolError as exc:
        raise InvalidRequest(str(exc)) from exc
    return target, headers


def request_head(request: HttpRequest) -> RequestHead:
    """Describe the public request for the local server."""
    scope = request.scope  # type: ignore[attr-defined]
    method = request.method or "GET"
    target, headers = forwarded(scope, method)
    return RequestHead(
        method=method, path=target, headers=headers, body=_has_body(received_headers(scope))
    )


def received_headers(scope: dict) -> Headers:
    """The public request's header lines as latin-1 text, every byte kept."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]


def _has_body(headers: Headers) -> bool:
    if protocol.is_chunked(headers):
        return True
    lengths = protocol.header_values(headers, "content-length")
    return bool(lengths) and lengths[0].strip() not in {"", "0"}


class _NoCookies(SimpleCookie):
    """A cookie jar that keeps nothing: only the local server sets cookies here."""

    def __setitem__(self, key, value):
        pass

    def load(self, rawdata):
        pass


class UpstreamResponse(StreamingHttpResponse):
    """The local server's response, sent on with exactly its header lines.

    Django middleware may still set headers or cookies on it; ``items()`` and the
    cookie jar ignore them, so the public client sees only what the local server sent
    (minus hop-by-hop framing, which the server redoes for its own connection).
    """

    def __init__(self, stream: Stream, head: ResponseHead, method: str) -> None:
        """Raises InvalidResponse for a head whose framing cannot be passed on safely."""
        framing = response_framing(head)
        send_body = head.body and method != "HEAD" and head.status not in _BODYLESS_STATUSES
        length = framing.length if send_body else None
        super().__init__(_relay_body(stream, send_body, length), status=head.status)
        self.upstream_headers = framing.headers

    def items(self):
        return list(self.upstream_headers)

    @property  # type: ignore[override]
    def cookies(self) -> SimpleCookie:
        return _NoCookies()

    @cookies.setter
    def cookies(self, value: SimpleCookie) -> None:
        pass


async def _relay_body(stream: Stream, send_body: bool, length: int | None) -> AsyncIterator[bytes]:
    """Yield the response body; with a declared ``length``, exactly that many bytes.

    A body longer or shorter than declared raises BodyMismatch, and the server resets
    the public connection: bytes past the length would be read as the next response
    on that connection, and a short body would swallow the next response's head.
    """
    # daphne writes only the first body chunk of a HEAD/204/304 response and leaks
    # the rest onto the connection: for those, nothing is yielded at all.
    try:
        if send_body:
            if not stream.body_waiting():
                # daphne writes a head only along with body bytes; a head that came
                # alone (a long poll, say) goes to the public client now.
                yield b""
            remaining = length
            async for chunk in stream.body():
                if remaining is not None:
                    if len(chunk) > remaining:
                        raise BodyMismatch("body longer than its Content-Length")
                    remaining -= len(chunk)
                yield chunk
            if remaining:
                raise BodyMismatch("body shorter than its Content-Length")
    finally:
        await stream.close()


#: Our answer to each failure before the response started: status, the
#: ``Luminet-Error`` code, and the page's sentence. Looked up along the exception's
#: MRO, so a subclass without a row of its own answers as its parent.
ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    TunnelNotFound: (502, "tunnel-not-found", "Tunnel {host} is not connected."),
    TunnelBusy: (503, "tunnel-busy", "Tunnel {host} is too busy; try again."),
    Unavailable: (503, "unavailable", "The tunnel service is unavailable; try again."),
    TunnelTimeout: (504, "local-timeout", "The local server did not answer in time."),
    LocalServerRefused: (
        502,
        "local-refused",
        "Tunnel {host} is online, but its local server did not answer ({detail}). "
        "Start the local server, or check the address the client forwards to.",
    ),
    LocalServerError: (502, "local-error", "The local server failed: {detail}"),
    TunnelClosed: (502, "tunnel-closed", "Tunnel {host} closed before answering."),
    BodyLost: (502, "body-lost", "The request or response body was lost on the way."),
    InvalidRequest: (400, "bad-request", "This request cannot be forwarded: {detail}"),
    InvalidResponse: (502, "invalid-response", "The local server's answer is invalid: {detail}"),
    # Refusals by the tunnel's own rules (tunnels.edge.rules): the page never says
    # which rule, nor which credentials or networks would pass.
    AuthRequired: (401, AuthRequired.code, "Tunnel {host} asks for a user name and password."),
    AddressRefused: (
        403,
        AddressRefused.code,
        "Tunnel {host} does not take requests from your address.",
    ),
    RateLimited: (
        429,
        "rate-limited",
        "Tunnel {host} has had all the requests its limit allows for now; try again in {detail} s.",
    ),
}


def error_page(exc: Exception, subdomain: str) -> tuple[int, str, str]:
    """Our own short page for a failure: status, ``Luminet-Error`` code, HTML."""
    status, code, template = next(ERRORS[cls] for cls in type(exc).__mro__ if cls in ERRORS)
    host = f"{subdomain}.{settings.LUMINET_TUNNEL_DOMAIN}"
    text = template.format(host=host, detail=exc)
    page = (
        f"<!doctype html><title>{status} {html.escape(code)}</title><h1>{html.escape(text)}</h1>\n"
    )
    return status, code, page


#: Seconds a 503 (a busy tunnel, a service without Redis) asks the caller to wait.
RETRY_AFTER = "5"


def error_headers(status: int, code: str, exc: Exception | None = None) -> list[tuple[str, str]]:
    """The headers of our own failure answer: its ``Luminet-Error``, and when to retry
    (a 503's few seconds, or a limit's window end)."""
    headers = [("Luminet-Error", code)]
    if isinstance(exc, RateLimited):
        headers.append(("Retry-After", str(exc.retry_after)))
    elif status == 503:
        headers.append(("Retry-After", RETRY_AFTER))
    return headers


def error_response(exc: Exception, subdomain: str) -> HttpResponse:
    """:func:`error_page` as the view's response, with :func:`error_headers`."""
    status, code, page = error_page(exc, subdomain)
    response = HttpResponse(page, status=status, content_type="text/html; charset=utf-8")
    for name, value in error_headers(status, code):
        response[name] = value
    return response
