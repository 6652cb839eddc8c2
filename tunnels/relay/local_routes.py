"""The routes of the tunnels whose connections this process holds.

A public request for such a tunnel is found here without asking the registry
(a Redis round trip on Redis), and, with the channel layer's local delivery
(``redislayer``), reaches the tunnel and comes back without Redis at all. When
this process holds several connections of a tunnel, requests are spread over
them. The registry stays the truth for every other process; a session adds its
route when it has claimed its subdomain and removes it when it ends.
"""

from __future__ import annotations

import random

from tunnels.registry import Route

_routes: dict[str, dict[str, Route]] = {}


def hold(route: Route) -> None:
    """This process's session on ``route.channel`` now serves ``route.subdomain``."""
    _routes.setdefault(route.subdomain, {})[route.channel] = route


def drop(subdomain: str, channel: str) -> None:
    """The session on ``channel`` no longer serves ``subdomain``."""
    held = _routes.get(subdomain)
    if held is not None and held.pop(channel, None) is not None and not held:
        del _routes[subdomain]


def find(subdomain: str) -> Route | None:
    held = _routes.get(subdomain)
    if not held:
        return None
    if len(held) == 1:
        return next(iter(held.values()))
    return random.choice(list(held.values()))
