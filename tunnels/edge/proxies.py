"""Behind a proxy we trust (Caddy), every request's scope says what the proxy saw.

A request that reaches daphne through one of ``LUMINET_TRUSTED_PROXIES`` has the
proxy as its peer, the proxy's ``X-Forwarded-For`` saying who called, and
``X-Forwarded-Proto`` saying over what. :class:`BehindProxies` rewrites such a
scope before anything else reads it, so that the rest of the server sees the
request as if the caller had connected directly:

- ``client`` is the caller (:func:`~tunnels.edge.rules.find_caller`): IP rules,
  the limit on failed tunnel authentications, the live tunnels' addresses and the
  admin's ``REMOTE_ADDR`` all see the caller, not the proxy;
- ``scheme`` is ``https``/``wss`` when the proxy says so: Django then knows the
  admin was reached over https (no redirect loop, CSRF checks against
  ``https://`` origins) without ``SECURE_PROXY_SSL_HEADER``, which Django would
  believe from anyone;
- the ``X-Forwarded-For`` entries our proxies wrote, and their
  ``X-Forwarded-Proto``, are consumed: a local server gets the same forwarding
  headers as without the proxy (``forwarding.forwarded``).

A peer that is not a trusted proxy gets nothing of this: its X-Forwarded-* claims
decide nothing. Unlike daphne's ``--proxy-headers``, which believes them from
every peer and takes the *left-most* ``X-Forwarded-For`` entry, the one a caller
writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings

from .intake import Receive, Send
from .policy import Network
from .rules import find_caller

Application = Any  # an ASGI application

#: What a trusted proxy's ``X-Forwarded-Proto`` turns each scope type's scheme into.
_SCHEMES = {
    "http": {"http": "http", "https": "https"},
    "websocket": {"http": "ws", "https": "wss"},
}
_CONSUMED = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})


class BehindProxies:
    """ASGI middleware: :func:`as_seen_by_proxies` on every HTTP and WebSocket scope."""

    def __init__(self, app: Application) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        trusted = settings.LUMINET_TRUSTED_PROXIES
        if trusted and scope["type"] in _SCHEMES:
            scope = as_seen_by_proxies(scope, trusted)
        await self.app(scope, receive, send)


def as_seen_by_proxies(scope: dict[str, Any], trusted: Sequence[Network]) -> dict[str, Any]:
    """The scope with the caller and scheme a trusted proxy in front names; unchanged
    when the peer is not one of ``trusted``."""
    caller = find_caller(scope, trusted)
    if not caller.proxied:
        return scope
    proto = None
    headers = []
    for name, value in scope.get("headers", ()):
        if name not in _CONSUMED:
            headers.append((name, value))
        elif name == b"x-forwarded-proto":
            # The last one is what the nearest proxy said (Caddy sets exactly one).
            proto = bytes(value).decode("latin-1").strip().lower()
    if caller.claimed:
        headers.append((b"x-forwarded-for", ", ".join(caller.claimed).encode("latin-1")))
    rewritten = {**scope, "headers": headers}
    rewritten["client"] = (str(caller.address), 0) if caller.address is not None else None
    scheme = _SCHEMES[scope["type"]].get(proto or "")
    if scheme is not None:
        rewritten["scheme"] = scheme
    return rewritten
