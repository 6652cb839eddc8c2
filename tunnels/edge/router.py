"""The one router in front of everything: the host is classified once, a tunnel looked
up once, for HTTP and WebSocket alike.

- ``<label>.<tunnel domain>``: the tunnel is looked up in the registry here, and
  its :class:`~tunnels.registry.Route` travels in the ASGI scope (``ROUTE``) to
  the catch-all view (HTTP) or the public WebSocket consumer. A subdomain with no
  live tunnel is answered here (502 ``tunnel-not-found``), before Django or a
  consumer starts, and before any of the request body is read. Per-tunnel rules
  belong here too, read from the route, so they hold on whichever server process
  a request lands on.
- the main host: Django's full stack (admin, health) with a capped body
  (``intake``), and the clients' tunnel endpoint ``/tunnel`` for WebSockets. The
  main host's stack never sees a tunnel host.
- any other host: 400 for HTTP, a refused handshake for WebSockets.

The tunnel endpoint answers on any host that is not a tunnel host, so a client can
reach the server by IP address or an internal name; the token, not the host, is
what authenticates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunnels.hosts import MainHost, TunnelHost, classify, header
from tunnels.registry import Route
from tunnels.relay.backends import Backends
from tunnels.relay.errors import TunnelError
from tunnels.relay.stream import find_route

from .forwarding import error_headers, error_page
from .intake import Receive, Send, plain_response, read_capped_body, refuse_unknown_host

#: The scope key under which a tunnel host's route reaches the view or consumer.
ROUTE = "luminet.route"
#: The path of the clients' tunnel WebSocket on the main host.
TUNNEL_PATH = "/tunnel"

Application = Any  # an ASGI application


def route_of(scope: Mapping[str, Any]) -> Route:
    """The route the router found for this tunnel-host request."""
    route = scope[ROUTE]
    assert isinstance(route, Route)
    return route


async def find(subdomain: str) -> Route | TunnelError:
    try:
        return await find_route(subdomain, Backends.current().registry)
    except TunnelError as exc:  # not found, or the registry unreachable
        return exc


class EdgeRouter:
    def __init__(
        self,
        *,
        main_http: Application,
        tunnel_http: Application,
        public_socket: Application,
        tunnel_endpoint: Application,
    ) -> None:
        self.main_http = main_http
        self.tunnel_http = tunnel_http
        self.public_socket = public_socket
        self.tunnel_endpoint = tunnel_endpoint

    async def http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        host = classify(header(scope, b"host") or "")
        if isinstance(host, TunnelHost):
            found = await find(host.subdomain)
            if isinstance(found, Route):
                await self.tunnel_http({**scope, ROUTE: found}, receive, send)
            else:
                status, code, page = error_page(found, host.subdomain)
                await plain_response(send, status, page, "text/html", error_headers(status, code))
        elif isinstance(host, MainHost):
            body = await read_capped_body(scope, receive, send)
            if body is not None:
                await self.main_http(scope, body, send)
        else:
            await refuse_unknown_host(send)

    async def websocket(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        host = classify(header(scope, b"host") or "")
        if isinstance(host, TunnelHost):
            found = await find(host.subdomain)
            if isinstance(found, Route):
                await self.public_socket({**scope, ROUTE: found}, receive, send)
            else:
                status, code, _ = error_page(found, host.subdomain)
                await refuse_handshake(receive, send, status, error_headers(status, code))
        elif scope["path"] == TUNNEL_PATH:
            await self.tunnel_endpoint(scope, receive, send)
        else:
            await refuse_handshake(receive, send, 403)


async def refuse_handshake(
    receive: Receive, send: Send, status: int, headers: list[tuple[str, str]] | None = None
) -> None:
    """Answer a WebSocket handshake with an HTTP status (the ASGI denial response)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    lines = [(name.lower().encode(), value.encode()) for name, value in headers or []]
    await send({"type": "websocket.http.response.start", "status": status, "headers": lines})
    await send({"type": "websocket.http.response.body", "body": b""})
