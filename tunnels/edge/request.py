"""The request a tunnel host's catch-all view gets."""

from __future__ import annotations

from django.core.handlers.asgi import ASGIRequest

from tunnels.registry import Route

from .body import RequestBody
from .router import route_of


class TunnelRequest(ASGIRequest):
    """A request for a tunnel host: the route and the body reader are typed here, not
    attributes set elsewhere."""

    #: Read the body from here, as it arrives (never ``request.body``).
    body_reader: RequestBody

    @property
    def route(self) -> Route:
        """Where the edge router found the tunnel (``tunnels.edge.router``)."""
        return route_of(self.scope)
