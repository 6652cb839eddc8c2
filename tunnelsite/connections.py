"""Limits on public connections against slow and many-connection attacks (slowloris).

- A request head must arrive within ``head_timeout`` seconds of its first byte, or
  the connection gets 408 and is closed.
- Once a body has started, it must keep up ``min_body_rate`` bytes a second over
  each ``body_rate_window``, or the connection is dropped; time the server itself
  holds the body back (backpressure) does not count.
- A WebSocket peer that reads nothing of what we send for ``stall_timeout``
  seconds is dropped (a tunnel client that stops reading would otherwise hold its
  server's sends); until then our sends to it wait.
- At most ``per_address`` connections from one address and ``total`` in all;
  one more gets 503 and is closed. Trusted proxies (Caddy in front, which carries
  many callers on its connections) are exempt from the per-address cap.

Measured before (issue 8): one header line or body byte every 25 s kept a
connection past 175 s, and 5,000 half-open connections from one address were all
accepted.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout: float = 20.0
    min_body_rate: float = 1024.0
    body_rate_window: float = 10.0
    per_address: int = 256
    total: int = 10_000
    #: Seconds a WebSocket peer may leave our writes unread before it is dropped.
    stall_timeout: float = 60.0
    #: Addresses never held to ``per_address`` (proxies in front of the server).
    trusted: tuple[Network, ...] = field(default=())

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"127.0.0.1/32, ::1"`` as networks; raises ValueError naming a bad entry."""
    networks = []
    for part in value.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {part!r}") from None
    return tuple(networks)


class ConnectionGuard:
    """Counts open connections per address and in all; says whether one more may open."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._per_address: Counter[str] = Counter()
        self.open = 0

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address`` if the limits allow it."""
        if self.open >= self.limits.total:
            return False
        if self._per_address[address] >= self.limits.per_address and not self.limits.is_trusted(
            address
        ):
            return False
        self._per_address[address] += 1
        self.open += 1
        return True

    def closed(self, address: str) -> None:
        """Forget a connection ``admit`` counted."""
        self.open -= 1
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]
