"""Translate between Django requests/responses and tunnel stream heads, faithfully."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from client import protocol
from client.protocol import Headers, ProtocolError

from . import relay

# Headers this proxy sets itself (after dropping what the public client sent).
_REPLACED = {"x-forwarded-proto", "x-forwarded-host"}
# Responses that never carry a body (RFC 9110 sections 6.4.1, 9.3.2).
_BODYLESS_STATUSES = {204, 304}


class InvalidRequest(Exception):
    """The public request cannot be expressed on the tunnel (e.g. a malformed target)."""


def forwarded(scope: dict, method: str, drop: frozenset[str] = frozenset()) -> tuple[str, Headers]:
    """Return the raw target and the headers to send on for an ASGI scope.

    Hop-by-hop fields and ``drop`` go; X-Forwarded-For gains the public client's
    address; X-Forwarded-Proto and -Host are set by us. Raises InvalidRequest if the
    result cannot travel on the tunnel.
    """
    path = scope.get("raw_path") or scope["path"].encode()
    target = path.decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    received = _received(scope)
    unwanted = _REPLACED | drop
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


def request_head(request: HttpRequest) -> relay.RequestHead:
    """Describe the public request for the local server."""
    scope = request.scope  # type: ignore[attr-defined]
    method = request.method or "GET"
    target, headers = forwarded(scope, method)
    return relay.RequestHead(
        method=method, path=target, headers=headers, body=_has_body(_received(scope))
    )


def _received(scope: dict) -> Headers:
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

    def __init__(self, stream: relay.Stream, head: relay.ResponseHead, method: str) -> None:
        send_body = head.body and method != "HEAD" and head.status not in _BODYLESS_STATUSES
        super().__init__(_relay_body(stream, send_body), status=head.status)
        self.upstream_headers = protocol.end_to_end(head.headers)

    def items(self):
        return list(self.upstream_headers)

    @property  # type: ignore[override]
    def cookies(self) -> SimpleCookie:
        return _NoCookies()

    @cookies.setter
    def cookies(self, value: SimpleCookie) -> None:
        pass


async def _relay_body(stream: relay.Stream, send_body: bool) -> AsyncIterator[bytes]:
    # daphne writes only the first body chunk of a HEAD/204/304 response and leaks
    # the rest onto the connection: for those, nothing is yielded at all.
    try:
        if send_body:
            if not stream.body_waiting():
                # daphne writes a head only along with body bytes; a head that came
                # alone (a long poll, say) goes to the public client now.
                yield b""
            async for chunk in stream.body():
                yield chunk
    finally:
        await stream.close()


_ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    relay.TunnelNotFound: (502, "tunnel-not-found", "Tunnel {host} is not connected."),
    relay.TunnelBusy: (503, "tunnel-busy", "Tunnel {host} is too busy; try again."),
    relay.TunnelTimeout: (504, "local-timeout", "The local server did not answer in time."),
    relay.LocalServerError: (502, "local-error", "The local server failed: {detail}"),
    relay.TunnelClosed: (502, "tunnel-closed", "Tunnel {host} closed before answering."),
    InvalidRequest: (400, "bad-request", "This request cannot be forwarded: {detail}"),
}


def error_response(exc: Exception, subdomain: str) -> HttpResponse:
    """Our own short page for a failure, marked with a Luminet-Error header."""
    status, code, template = _ERRORS[type(exc)]
    host = f"{subdomain}.{settings.LUMINET_TUNNEL_DOMAIN}"
    text = template.format(host=host, detail=exc)
    page = (
        f"<!doctype html><title>{status} {html.escape(code)}</title><h1>{html.escape(text)}</h1>\n"
    )
    response = HttpResponse(page, status=status, content_type="text/html; charset=utf-8")
    response["Luminet-Error"] = code
    return response
