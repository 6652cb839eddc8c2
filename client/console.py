"""The client's output: observers that print the tunnel's events, for people or programs.

``ConsoleLog`` prints the lines a person reads (``Tunnel active: <url>``, one line
per request); ``JsonLog`` prints one JSON object per line for programs
(``--log-format json``; the README lists the events). Neither ever prints the
token, a header value or a body byte.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
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


#: Seconds a response may run before its line is printed at once, marked as a stream
#: (server-sent events, a long download): otherwise it would show only when it ends.
LONG_STREAM_SECONDS = 1.0

_GREEN, _CYAN, _YELLOW, _RED, _RESET = "\033[32m", "\033[36m", "\033[33m", "\033[31m", "\033[0m"


def use_colour(out: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour only for a person at a terminal, and never with NO_COLOR set (no-color.org)."""
    isatty = getattr(out, "isatty", None)
    return (
        bool(isatty and isatty()) and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"
    )


class ConsoleLog(_Printer):
    """The human-readable log: a banner, then one line per request and WebSocket.

    A failed request's line says why (``502 connection refused by localhost:3000``,
    ``504 no response within 30 s``); a response still running after
    ``LONG_STREAM_SECONDS`` gets a line when that time is up, and another when it ends.
    """

    def __init__(
        self, out: TextIO, colour: bool | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(out)
        self._colour = use_colour(out, environ or os.environ) if colour is None else colour
        self._streaming: dict[ExchangeRecord, float] = {}
        self._streaming_lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def tunnel_active(self, url: str, subdomain: str, local_origin: str) -> None:
        self._line(f"Tunnel active: {url}\n→ forwarding to {local_origin}")

    def subdomain_changed(self, previous: str, subdomain: str) -> None:
        self._line(f"Subdomain {previous} was taken; this tunnel is now {subdomain}.")

    def tunnel_down(self, reason: str, retry_in: float) -> None:
        self._line(self._paint(_RED, f"Tunnel down ({reason}); reconnecting in {retry_in:.1f} s"))

    def connect_failed(self, reason: str, retry_in: float) -> None:
        self._line(self._paint(_RED, f"Cannot connect ({reason}); retrying in {retry_in:.1f} s"))

    def local_unreachable(self, local_origin: str, reason: str) -> None:
        self._line(
            self._paint(
                _YELLOW,
                f"Warning: nothing answers at {local_origin} ({reason}); "
                "requests get 502 until your server runs there",
            )
        )

    def response_started(self, record: ExchangeRecord) -> None:
        with self._streaming_lock:
            self._streaming[record] = record.started + LONG_STREAM_SECONDS
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch_streams, name="console-streams", daemon=True
                )
                self._watcher.start()

    def exchange_finished(self, record: ExchangeRecord) -> None:
        self._exchange(record)

    def exchange_failed(self, record: ExchangeRecord, reason: str) -> None:
        self._exchange(record)

    def _exchange(self, record: ExchangeRecord) -> None:
        with self._streaming_lock:
            self._streaming.pop(record, None)
        status = status_text(record)
        self._line(
            f"{record.method:<7} {record.path}  {self._paint(_status_colour(record), status)}"
            f"  {record.ms:.0f} ms"
        )

    def _watch_streams(self) -> None:
        """Print the line of each response still running after LONG_STREAM_SECONDS."""
        while True:
            time.sleep(LONG_STREAM_SECONDS / 4)  # a display refresh, not synchronisation
            now = time.monotonic()
            with self._streaming_lock:
                due = [r for r, at in self._streaming.items() if at <= now and r.ended is None]
                for record in due:
                    del self._streaming[record]
            for record in due:
                status = self._paint(_status_colour(record), str(record.status))
                self._line(f"{record.method:<7} {record.path}  {status}  streaming…")

    def websocket_opened(self, record: SocketRecord) -> None:
        self._line(f"{'WS':<7} {record.path}  open")

    def websocket_closed(self, record: SocketRecord) -> None:
        code = "no code" if record.code is None else str(record.code)
        by = f" by the {record.closed_by} side" if record.closed_by else ""
        self._line(f"{'WS':<7} {record.path}  closed{by} ({code})  {record.ms:.0f} ms")

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        self._line(f"{'WS':<7} {record.path}  {self._paint(_RED, reason)}")

    def inspector(self, url: str | None, problem: str = "") -> None:
        """Where the inspector listens, or why it does not (the CLI says it once, at start)."""
        self._line(f"Inspector: {url}" if url else f"Inspector: off ({problem})")

    def _paint(self, colour: str, text: str) -> str:
        return f"{colour}{text}{_RESET}" if self._colour else text


def _status_colour(record: ExchangeRecord) -> str:
    if record.failure is not None or (record.status or 500) >= 500:
        return _RED
    if record.status is not None and record.status >= 400:
        return _YELLOW
    if record.status is not None and record.status >= 300:
        return _CYAN
    return _GREEN


def status_text(record: ExchangeRecord) -> str:
    """The status column: the status, or what happened instead of a complete response."""
    match record.failure:
        case None:
            return "-" if record.status is None else str(record.status)
        case Failure.CANCELLED:
            # "504: no response within 30 s" when the server gave up; else the caller left.
            code, _, why = record.reason.partition(": ")
            if code.isdigit() and why:
                return f"{code} {why}"
            return "cancelled" if record.status is None else f"{record.status} cancelled"
        case Failure.TUNNEL_LOST:
            return "tunnel lost"
        case _:
            # The server answers 502 for us before a response head; after one, it aborts.
            if record.status is None:
                return f"502 {record.reason}"
            return f"{record.status} aborted ({record.reason})"


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

    def inspector(self, url: str | None, problem: str = "") -> None:
        """``{"event":"inspector","url":...}``; the url is null, with a reason, if it is off."""
        self._event("inspector", url=url, **({"reason": problem} if problem else {}))

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
