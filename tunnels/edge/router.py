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
- every tunnel-host exchange, answered or refused, passes a
  :class:`~tunnels.edge.metering.Meter` on its way (``tunnels.metrics``).
- any other host: 400 for HTTP, a refused handshake for WebSockets.

The tunnel endpoint answers on any host that is not a tunnel host, so a client can
reach the server by IP address or an internal name; the token, not the host, is
what authenticates it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from client.protocol import MAX_REFUSED_PATH
from tunnels import drain
from tunnels.hosts import MainHost, TunnelHost, classify, header
from tunnels.limits import RateLimited, rate_limited
from tunnels.messages import TunnelRefused, to_layer
from tunnels.registry import Route
from tunnels.relay.backends import Backends
from tunnels.relay.errors import TunnelError
from tunnels.relay.stream import find_route

from .forwarding import error_headers, error_page
from .intake import Receive, Send, plain_response, read_capped_body, refuse_unknown_host
from .metering import Meter
from .notices import NoticeLimit
from .rules import Refusal, admitted, check
from .signed import WEBSOCKET_REFUSAL, forward_signed
from .webhooks import Refusal as WebhookRefusal

logger = logging.getLogger(__name__)

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
        self.notices = NoticeLimit()

    async def http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        host = classify(header(scope, b"host") or "")
        if isinstance(host, TunnelHost):
            meter = Meter("http")
            drain.state.request_started()  # a stopping process waits for it
            try:
                await self.tunnel_host_http(
                    host, scope, meter.receive(receive), meter.send(send), meter
                )
            finally:
                drain.state.request_ended()
                meter.done()
        elif isinstance(host, MainHost):
            body = await read_capped_body(scope, receive, send)
            if body is not None:
                await self.main_http(scope, body, send)
        else:
            await refuse_unknown_host(send)

    async def tunnel_host_http(
        self, host: TunnelHost, scope: dict[str, Any], receive: Receive, send: Send, meter: Meter
    ) -> None:
        found = await self.find_within_limit(host.subdomain, scope, meter)
        if isinstance(found, Route):
            if found.policy:
                refusal = check(found.policy, scope, settings.LUMINET_TRUSTED_PROXIES)
                if refusal is not None:
                    status, page, headers = refusal_answer(refusal, host.subdomain)
                    await plain_response(send, status, page, "text/html", headers)
                    await self.notify(found, scope, status, refusal.rule)
                    return
                scope = admitted(found.policy, scope)
            if found.policy is not None and found.policy.webhooks:
                scope = {**scope, ROUTE: found}
                specs = found.policy.webhooks
                webhook = await forward_signed(self.tunnel_http, specs, scope, receive, send)
                if webhook is not None:
                    await self.notify(found, scope, webhook.status, webhook_rule(webhook))
                return
            await self.tunnel_http({**scope, ROUTE: found}, receive, send)
        else:
            status, code, page = error_page(found, host.subdomain)
            headers = error_headers(status, code, found)
            await plain_response(send, status, page, "text/html", headers)

    async def websocket(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        host = classify(header(scope, b"host") or "")
        if isinstance(host, TunnelHost):
            meter = Meter("websocket")
            try:
                await self.tunnel_host_websocket(
                    host, scope, meter.receive(receive), meter.send(send), meter
                )
            finally:
                meter.done()
        elif scope["path"] == TUNNEL_PATH:
            await self.tunnel_endpoint(scope, receive, send)
        else:
            await refuse_handshake(receive, send, 403)

    async def tunnel_host_websocket(
        self, host: TunnelHost, scope: dict[str, Any], receive: Receive, send: Send, meter: Meter
    ) -> None:
        found = await self.find_within_limit(host.subdomain, scope, meter)
        if isinstance(found, Route):
            if found.policy:
                refused_by = check(found.policy, scope, settings.LUMINET_TRUSTED_PROXIES)
                if refused_by is not None:
                    status, _, headers = refusal_answer(refused_by, host.subdomain)
                    await refuse_handshake(receive, send, status, headers)
                    await self.notify(found, scope, status, refused_by.rule)
                    return
                scope = admitted(found.policy, scope)
            if found.policy is not None and found.policy.webhooks:
                refusal = WEBSOCKET_REFUSAL  # a webhook is never a WebSocket
                refused = [("Luminet-Error", refusal.code)]
                await refuse_handshake(receive, send, refusal.status, refused)
                await self.notify(found, scope, refusal.status, webhook_rule(refusal))
                return
            await self.public_socket({**scope, ROUTE: found}, receive, send)
        else:
            status, code, _ = error_page(found, host.subdomain)
            await refuse_handshake(receive, send, status, error_headers(status, code, found))

    async def find_within_limit(
        self, subdomain: str, scope: dict[str, Any], meter: Meter
    ) -> Route | TunnelError:
        """The tunnel's route if this request is within its rate limit, else why not.
        The meter learns the tunnel's token first, so a rate-limited request counts
        as a refusal in that token's usage."""
        found = await find(subdomain)
        if not isinstance(found, Route):
            return found
        meter.token_id = found.token_id
        if not found.rate_limit:
            return found
        limited = await rate_limited(found)
        if isinstance(limited, RateLimited):
            await self.notify(found, scope, 429, "rate limit")
        return limited

    async def notify(self, route: Route, scope: dict[str, Any], status: int, rule: str) -> None:
        """Tell the tunnel's client a request was refused, unless it heard enough this second."""
        if not self.notices.allow(route.subdomain):
            return
        method = scope.get("method", "GET")
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        notice = TunnelRefused(method, path[:MAX_REFUSED_PATH], status, rule)
        try:
            await Backends.current().layer.send(route.channel, to_layer(notice))
        except Exception as exc:  # ChannelFull or Redis failing: the refusal stands anyway
            logger.debug("refusal notice to %s not sent: %r", route.subdomain, exc)


def webhook_rule(refusal: WebhookRefusal) -> str:
    """The rule a webhook refusal names for the tunnel's owner (never a secret)."""
    return f"webhook ({refusal.reason})"


def refusal_answer(refusal: Refusal, subdomain: str) -> tuple[int, str, list[tuple[str, str]]]:
    """Status, page and headers of a rule's refusal (``forwarding.ERRORS``)."""
    status, code, page = error_page(refusal, subdomain)
    return status, page, error_headers(status, code) + refusal.headers()


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
