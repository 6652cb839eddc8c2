"""The observer that feeds the inspector: the tunnel's events into the store and metrics.

Glue only: each hook hands its record to ``Store`` or ``TunnelMetrics``, which
hold a lock for microseconds and do no I/O, so the tunnel's threads never wait
on the inspector (``client.events``: observers must return quickly).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..events import ExchangeRecord, Observer, SocketRecord, StreamRecord, TunnelUp
from .metrics import TunnelMetrics
from .store import Store


@dataclass(frozen=True)
class TunnelInfo:
    """A tunnel as the agent API lists it."""

    name: str
    #: Random per run, like ngrok's tunnel IDs; kept across reconnections.
    id: str
    url: str
    subdomain: str
    local_origin: str
    up: bool = True
    #: Seconds of the last ping's round trip to the server.
    latency: float | None = None

    @property
    def proto(self) -> str:
        return "https" if self.url.startswith("https:") else "http"


class Capture(Observer):
    """Copies exchanges, WebSockets and their bytes into ``store``; counts them in each
    tunnel's ``metrics``."""

    taps_bodies = True

    def __init__(
        self, store: Store, names: list[str], metrics: Callable[[], TunnelMetrics] = TunnelMetrics
    ) -> None:
        self.store = store
        #: Each tunnel's, by name; created up front, so no hook ever adds a key.
        self.metrics = {name: metrics() for name in names}
        self._ids = {name: secrets.token_hex(16) for name in names}
        #: The tunnels that have been up, in the order they came up. Each value is
        #: replaced whole on a change, so readers see one consistent TunnelInfo.
        self.tunnels: dict[str, TunnelInfo] = {}

    def tunnel_active(self, tunnel: TunnelUp) -> None:
        self.tunnels[tunnel.name] = TunnelInfo(
            tunnel.name,
            self._ids[tunnel.name],
            tunnel.url,
            tunnel.subdomain,
            tunnel.local_origin,
            latency=tunnel.latency,
        )

    def tunnel_down(self, name: str, reason: str, retry_in: float) -> None:
        if (info := self.tunnels.get(name)) is not None:
            self.tunnels[name] = replace(info, up=False)

    def latency(self, name: str, seconds: float) -> None:
        if (info := self.tunnels.get(name)) is not None:
            self.tunnels[name] = replace(info, latency=seconds)

    def refused_at_edge(self, name: str, method: str, path: str, status: int, rule: str) -> None:
        # Listed like an exchange, ended at once, with the rule as its "edge" badge.
        now = time.monotonic()
        record = ExchangeRecord(
            stream=0, method=method, path=path, tunnel=name, status=status, edge_rule=rule
        )
        record.started, record.ended, record.wall_started = now, now, time.time()
        record.outcome = "finished"
        self.store.exchange_started(record)
        self.store.ended(record)

    def exchange_started(self, record: ExchangeRecord) -> None:
        self.store.exchange_started(record)
        self.metrics[record.tunnel].stream_opened()

    def response_started(self, record: ExchangeRecord) -> None:
        self.store.response_started(record)

    def request_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        self.store.request_body(record, chunk)

    def response_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        self.store.response_body(record, chunk)

    def exchange_finished(self, record: ExchangeRecord) -> None:
        self._ended(record, http=True)

    def exchange_failed(self, record: ExchangeRecord, reason: str) -> None:
        self._ended(record, http=True)

    def websocket_opened(self, record: SocketRecord) -> None:
        self.store.websocket_opened(record)
        self.metrics[record.tunnel].stream_opened()

    def websocket_accepted(self, record: SocketRecord) -> None:
        self.store.changed(record)

    def websocket_message(
        self, record: SocketRecord, data: bytes, text: bool, from_public: bool
    ) -> None:
        self.store.websocket_message(record, data, time.time(), text, from_public)

    def websocket_closed(self, record: SocketRecord) -> None:
        self._ended(record, http=False)

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        self._ended(record, http=False)

    def _ended(self, record: StreamRecord, http: bool) -> None:
        self.store.ended(record)
        ms = record.ms
        self.metrics[record.tunnel].stream_closed(0.0 if ms is None else ms / 1000, http)
