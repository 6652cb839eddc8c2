"""The observer that feeds the inspector: the tunnel's events into the store and metrics.

Glue only: each hook hands its record to ``Store`` or ``TunnelMetrics``, which
hold a lock for microseconds and do no I/O, so the tunnel's threads never wait
on the inspector (``client.events``: observers must return quickly).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace

from ..events import Clock, ExchangeRecord, Observer, SocketRecord, StreamRecord
from .metrics import TunnelMetrics
from .store import Store


@dataclass(frozen=True)
class TunnelInfo:
    """The tunnel as the agent API lists it."""

    #: Random per run, like ngrok's tunnel IDs; kept across reconnections.
    id: str
    url: str
    subdomain: str
    local_origin: str
    up: bool = True

    @property
    def proto(self) -> str:
        return "https" if self.url.startswith("https:") else "http"


class Capture(Observer):
    """Copies exchanges, WebSockets and their bytes into ``store``; counts them in ``metrics``."""

    taps_bodies = True

    def __init__(self, store: Store, metrics: TunnelMetrics, wall_clock: Clock = time.time) -> None:
        self.store = store
        self.metrics = metrics
        self._wall_clock = wall_clock
        #: Replaced whole on each change, so readers see one consistent value.
        self.tunnel: TunnelInfo | None = None
        self._tunnel_id = secrets.token_hex(16)

    def tunnel_active(self, url: str, subdomain: str, local_origin: str) -> None:
        self.tunnel = TunnelInfo(self._tunnel_id, url, subdomain, local_origin)

    def tunnel_down(self, reason: str, retry_in: float) -> None:
        if self.tunnel is not None:
            self.tunnel = replace(self.tunnel, up=False)

    def exchange_started(self, record: ExchangeRecord) -> None:
        self.store.exchange_started(record)
        self.metrics.stream_opened()

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
        self.metrics.stream_opened()

    def websocket_accepted(self, record: SocketRecord) -> None:
        self.store.changed(record)

    def websocket_message(
        self, record: SocketRecord, data: bytes, text: bool, from_public: bool
    ) -> None:
        self.store.websocket_message(record, data, self._wall_clock(), text, from_public)

    def websocket_closed(self, record: SocketRecord) -> None:
        self._ended(record, http=False)

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        self._ended(record, http=False)

    def _ended(self, record: StreamRecord, http: bool) -> None:
        self.store.ended(record)
        ms = record.ms
        self.metrics.stream_closed(0.0 if ms is None else ms / 1000, http)
