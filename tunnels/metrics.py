"""What this server process has carried, for Prometheus (``prometheus_client``).

Counted at the edge, per process: the requests and WebSocket upgrades to tunnel
hosts by how they ended (``answered`` when the local server's answer went out,
otherwise the ``Luminet-Error`` code of ours that went out instead), the body
bytes each way, the refusals by the rule that refused them, and the time from a
request's arrival to its response's head. Served at ``/metrics`` on the main host
(with an API key) and, with ``LUMINET_METRICS_BIND``, on an address of the
operator's choosing: with several processes each one is scraped at its own
address, since each counts only what it carried.
"""

from __future__ import annotations

import weakref
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

# The ``*_created`` series double every counter's lines and say only when the
# process started, which a counter's reset already tells Prometheus.
disable_created_metrics()

#: A registry of our own: the library's default one also holds the process and
#: platform collectors, whose names would clash across our processes' dashboards
#: no more than they help; ours is what the endpoint serves.
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "luminet_requests",
    "Public requests (kind http) and WebSocket upgrades (kind websocket) to tunnel "
    "hosts, by outcome: answered, or the Luminet-Error code answered instead.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
BYTES = Counter(
    "luminet_bytes",
    "Body and WebSocket message bytes through tunnel hosts: in from public callers, out to them.",
    ["direction"],
    registry=REGISTRY,
)
REFUSALS = Counter(
    "luminet_refusals",
    "Requests refused at the edge before reaching a tunnel, by the rule or limit "
    "(its Luminet-Error code).",
    ["rule"],
    registry=REGISTRY,
)
EDGE_LATENCY = Histogram(
    "luminet_edge_latency_seconds",
    "Seconds from a request's arrival at the edge to its response's head going out "
    "(the tunnel's round trip and the local server's time included).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "luminet_deliveries",
    "Tunnel-host requests by how they reach their tunnel: to a connection this "
    "process holds (local: no Redis) or through the channel layer to another "
    "process (layer).",
    ["path"],
    registry=REGISTRY,
)
LIVE_TUNNELS = Gauge(
    "luminet_tunnels_live",
    "Tunnels of which this process holds a client connection.",
    registry=REGISTRY,
)
TUNNEL_CONNECTIONS = Gauge(
    "luminet_tunnel_connections",
    "Tunnel client connections this process holds (a tunnel has one or more).",
    registry=REGISTRY,
)

#: ``Luminet-Error`` codes that are refusals (a rule or a limit said no), as
#: opposed to failures (no tunnel, the local server did not answer).
REFUSAL_CODES: frozenset[str] = frozenset(
    {"webhook-signature", "webhook-too-large", "auth-required", "ip-denied", "rate-limited"}
)


class TunnelHolder(Protocol):
    """A tunnel connection's session, as the live-tunnels gauges see it."""

    subdomain: str | None

    @property
    def holds_tunnel(self) -> bool: ...


#: Every tunnel consumer of this process until it is garbage; the gauge counts
#: them when scraped, so a live tunnel costs nothing per request.
_holders: weakref.WeakSet[TunnelHolder] = weakref.WeakSet()


def track(holder: TunnelHolder) -> None:
    _holders.add(holder)


def _held() -> list[TunnelHolder]:
    return [holder for holder in list(_holders) if holder.holds_tunnel]


# A tunnel with two connections here counts once as a tunnel, twice as connections.
LIVE_TUNNELS.set_function(lambda: len({holder.subdomain for holder in _held()}))
TUNNEL_CONNECTIONS.set_function(lambda: len(_held()))


def observe(kind: str, outcome: str, seconds: float | None, bytes_in: int, bytes_out: int) -> None:
    """One request or WebSocket to a tunnel host ended."""
    REQUESTS.labels(kind, outcome).inc()
    if outcome in REFUSAL_CODES:
        REFUSALS.labels(outcome).inc()
    if seconds is not None:
        EDGE_LATENCY.observe(seconds)
    if bytes_in:
        BYTES.labels("in").inc(bytes_in)
    if bytes_out:
        BYTES.labels("out").inc(bytes_out)
