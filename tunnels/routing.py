"""WebSocket routing: public sockets on tunnel hosts; ``/tunnel`` for clients elsewhere.

The tunnel endpoint answers on any host that is not a tunnel host, so a client
can reach the server by IP address or an internal name; the token, not the host,
is what authenticates it. Tunnel hosts are reserved for public traffic.
"""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier

from .consumers import PublicSocketConsumer, TunnelConsumer
from .hosts import TunnelHost, classify, header

TUNNEL_PATH = "/tunnel"

_tunnel = TunnelConsumer.as_asgi()
_public = PublicSocketConsumer.as_asgi()
_deny = WebsocketDenier.as_asgi()


async def websocket_application(scope, receive, send):
    host = classify(header(scope, b"host") or "")
    if isinstance(host, TunnelHost):
        return await _public(scope, receive, send)
    if scope["path"] == TUNNEL_PATH:
        return await _tunnel(scope, receive, send)
    return await _deny(scope, receive, send)
