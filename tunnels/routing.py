"""WebSocket routing: ``/tunnel`` for clients; everything else is refused.

The tunnel endpoint answers on any host that is not a tunnel host, so a client
can reach the server by IP address or an internal name; the token, not the host,
is what authenticates it. Tunnel hosts are reserved for public traffic.
"""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier

from .consumers import TunnelConsumer
from .hosts import TunnelHost, classify, header

TUNNEL_PATH = "/tunnel"

_tunnel = TunnelConsumer.as_asgi()
_deny = WebsocketDenier.as_asgi()


async def websocket_application(scope, receive, send):
    host = classify(header(scope, b"host") or "")
    if not isinstance(host, TunnelHost) and scope["path"] == TUNNEL_PATH:
        return await _tunnel(scope, receive, send)
    return await _deny(scope, receive, send)
