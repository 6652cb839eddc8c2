"""The client's output: observers that print the tunnel's events, for people or programs.

``ConsoleLog`` prints the lines a person reads (``Tunnel active: <url>``, one line
per request); ``JsonLog`` prints one JSON object per line for programs
(``--log-format json``; the README lists the events). Neither ever prints the
token, a header value or a body byte.
"""

from __future__ import annotations

import json
import threading
from typing import Any, TextIO

from .events import ExchangeRecord, Failure, Observer, SocketRecord

#: One encoder for every line: json.dumps with separators builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


class _Printer(Observer):
    """Writes whole lines from any thread."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def _line(self, line: str) -> None:
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


class ConsoleLog(_Printer):
    """The human-readable log: a banner, then one line per request and WebSocket."""

    def tunnel_active(self, url: str, subdomain: str, local_origin: str) -> None:
        self._line(f"Tunnel active: {url}\n→ forwarding to {local_origin}")

    def subdomain_changed(self, previous: str, subdomain: str) -> None:
        self._line(f"Previous subdomain {previous} was taken.")

    def tunnel_down(self, reason: str, retry_in: float) -> None:
        self._line(f"Tunnel down ({reason}); reconnecting in {retry_in:.1f} s")

    def connect_failed(self, reason: str, retry_in: float) -> None:
        self._line(f"Cannot connect ({reason}); retrying in {retry_in:.1f} s")

    def local_unreachable(self, local_origin: str, reason: str) -> None:
        self._line(
            f"Warning: nothing answers at {local_origin} ({reason}); "
            "requests get 502 until your server runs there"
        )

    def exchange_finished(self, record: ExchangeRecord) -> None:
        self._exchange(record)

    def exchange_failed(self, record: ExchangeRecord, reason: str) -> None:
        self._exchange(record)

    def _exchange(self, record: ExchangeRecord) -> None:
        self._line(f"{record.method:<7} {record.path}  {status_text(record)}  {record.ms:.0f} ms")

    def websocket_opened(self, record: SocketRecord) -> None:
        self._line(f"{'WS':<7} {record.path}  open")

    def websocket_closed(self, record: SocketRecord) -> None:
        self._line(f"{'WS':<7} stream {record.stream}  closed")

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        self._line(f"{'WS':<7} stream {record.stream}  closed")


def status_text(record: ExchangeRecord) -> str:
    """The status column: the status, or what happened instead of a complete response."""
    match record.failure:
        case None:
            return "-" if record.status is None else str(record.status)
        case Failure.CANCELLED:
            return "cancelled"
        case Failure.TUNNEL_LOST:
            return "tunnel lost"
        case _:
            # The server answers 502 for us before a response head; after one, it aborts.
            return "502" if record.status is None else f"{record.status} aborted"


class JsonLog(_Printer):
    """One JSON object per line: tunnel up and down, each exchange and WebSocket."""

    def tunnel_active(self, url: str, subdomain: str, local_origin: str) -> None:
        self._event("tunnel_active", url=url, subdomain=subdomain, forwarding=local_origin)

    def subdomain_changed(self, previous: str, subdomain: str) -> None:
        self._event("subdomain_changed", previous=previous, subdomain=subdomain)

    def tunnel_down(self, reason: str, retry_in: float) -> None:
        self._event("tunnel_down", reason=reason, retry_in=round(retry_in, 1))

    def connect_failed(self, reason: str, retry_in: float) -> None:
        self._event("connect_failed", reason=reason, retry_in=round(retry_in, 1))

    def local_unreachable(self, local_origin: str, reason: str) -> None:
        self._event("local_unreachable", forwarding=local_origin, reason=reason)

    def exchange_finished(self, record: ExchangeRecord) -> None:
        self._exchange(record)

    def exchange_failed(self, record: ExchangeRecord, reason: str) -> None:
        self._exchange(record)

    def _exchange(self, record: ExchangeRecord) -> None:
        line = {
            "event": "exchange",
            "stream": record.stream,
            "method": record.method,
            "path": record.path,
            "status": record.status,
        }
        _add_ending(line, record)
        self._line(_ENCODER.encode(line))

    def websocket_opened(self, record: SocketRecord) -> None:
        self._event("websocket_open", stream=record.stream, path=record.path)

    def websocket_closed(self, record: SocketRecord) -> None:
        self._websocket(record)

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        self._websocket(record)

    def _websocket(self, record: SocketRecord) -> None:
        line: dict[str, Any] = {"event": "websocket", "stream": record.stream, "path": record.path}
        if record.outcome == "closed":
            line["code"] = record.code
            line["closed_by"] = record.closed_by
        _add_ending(line, record)
        line["messages_in"] = record.messages_in
        line["messages_out"] = record.messages_out
        self._line(_ENCODER.encode(line))

    def _event(self, event: str, **fields: Any) -> None:
        self._line(_ENCODER.encode({"event": event, **fields}))


def _add_ending(line: dict[str, Any], record: ExchangeRecord | SocketRecord) -> None:
    """Add what every ended stream has: outcome, why it failed, duration, bytes."""
    line["outcome"] = record.outcome
    if record.failure is not None:
        line["failure"] = record.failure.value
        line["reason"] = record.reason
    ms = record.ms
    line["ms"] = None if ms is None else round(ms, 1)
    line["bytes_in"] = record.bytes_in
    line["bytes_out"] = record.bytes_out
