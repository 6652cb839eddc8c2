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

from .events import ExchangeRecord, Failure, Observer, SocketRecord, StreamRecord, TunnelUp

#: One encoder for every line: json.dumps with separators builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


class _Printer(Observer):
    """Writes whole lines from any thread."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        #: Whether lines name their tunnel: set when the client runs several.
        self._labelled = False

    def label_tunnels(self) -> None:
        """Several tunnels share this output: name each line's tunnel."""
        self._labelled = True

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
    """The human-readable log: a status block when a tunnel comes up, then one line
    per request and WebSocket.

    The block gives the public URL, where it forwards to, the rules the server
    applies at the edge (when there are any), the server with the
    connection's state and round trip, and the inspector's address. A failed
    request's line says why (``502 connection refused by localhost:3000``, ``504 no
    response within 30 s``); a response still running after ``LONG_STREAM_SECONDS``
    gets a line when that time is up, and another when it ends. With several
    tunnels, each line starts with its tunnel's name.
    """

    def __init__(
        self, out: TextIO, colour: bool | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(out)
        self._colour = use_colour(out, environ or os.environ) if colour is None else colour
        self._streaming: dict[ExchangeRecord, float] = {}
        self._streaming_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._inspector = "off"
        #: Tunnels that pass the public Host on, and those given the 403 hint (once a run).
        self._preserving: set[str] = set()
        self._hinted: set[str] = set()

    def tunnel_active(self, tunnel: TunnelUp) -> None:
        if tunnel.host_header == "preserve":
            self._preserving.add(tunnel.name)
        name = f" {tunnel.name}" if self._labelled else ""
        latency = "" if tunnel.latency is None else f", {tunnel.latency * 1000:.0f} ms round trip"
        # The rules as the server applies them, so a person sees the tunnel is guarded.
        rules = f"Rules at the edge: {', '.join(tunnel.rules)}\n" if tunnel.rules else ""
        self._line(
            f"Tunnel{name} active: {tunnel.url}\n"
            f"→ forwarding to {tunnel.local_origin}\n"
            f"{rules}"
            f"Server: {tunnel.server} (online{latency})\n"
            f"Inspector: {self._inspector}"
        )

    def subdomain_changed(self, name: str, previous: str, subdomain: str) -> None:
        self._line(
            f"{self._label(name)}Subdomain {previous} was taken; this tunnel is now {subdomain}."
        )

    def tunnel_down(self, name: str, reason: str, retry_in: float) -> None:
        text = f"Tunnel down ({reason}); reconnecting in {retry_in:.1f} s"
        self._line(self._label(name) + self._paint(_RED, text))

    def connect_failed(self, name: str, reason: str, retry_in: float) -> None:
        text = f"Cannot connect ({reason}); retrying in {retry_in:.1f} s"
        self._line(self._label(name) + self._paint(_RED, text))

    def refused_at_edge(self, name: str, method: str, path: str, status: int, rule: str) -> None:
        text = f"{status} {method} {path} refused at the edge: {rule}"
        self._line(self._label(name) + self._paint(_YELLOW, text))

    def local_unreachable(self, name: str, local_origin: str, reason: str) -> None:
        text = (
            f"Warning: nothing answers at {local_origin} ({reason}); "
            "requests get 502 until your server runs there"
        )
        self._line(self._label(name) + self._paint(_YELLOW, text))

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
            f"{self._label(record.tunnel)}{record.method:<7} {record.path}"
            f"  {self._paint(_status_colour(record), status)}  {record.ms:.0f} ms"
        )
        if record.status == 403 and self._first_403(record.tunnel):
            hint = (
                "Hint: the local server answered 403. If it checks the Host header (Vite's "
                '"Blocked request", Django\'s ALLOWED_HOSTS, webpack, Rails), start the '
                "client with --host-header rewrite"
            )
            self._line(self._label(record.tunnel) + self._paint(_YELLOW, hint))

    def _first_403(self, tunnel: str) -> bool:
        """Whether this is the first 403 of a tunnel that passes the public Host on."""
        with self._streaming_lock:
            if tunnel not in self._preserving or tunnel in self._hinted:
                return False
            self._hinted.add(tunnel)
            return True

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
                self._line(
                    f"{self._label(record.tunnel)}{record.method:<7} {record.path}"
                    f"  {status}  streaming…"
                )

    def websocket_opened(self, record: SocketRecord) -> None:
        self._line(f"{self._ws(record)}  open")

    def websocket_closed(self, record: SocketRecord) -> None:
        code = "no code" if record.code is None else str(record.code)
        by = f" by the {record.closed_by} side" if record.closed_by else ""
        self._line(f"{self._ws(record)}  closed{by} ({code})  {record.ms:.0f} ms")

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        self._line(f"{self._ws(record)}  {self._paint(_RED, reason)}")

    def inspector(self, url: str | None, problem: str = "") -> None:
        """Where the inspector listens, or why not: said in each tunnel's status block,
        and at once when it could not start (the tunnel may be a while coming up)."""
        self._inspector = url or f"off ({problem})"
        if url is None and problem != "--no-inspect":
            self._line(self._paint(_YELLOW, f"Inspector: {self._inspector}"))

    def _ws(self, record: StreamRecord) -> str:
        return f"{self._label(record.tunnel)}{'WS':<7} {record.path}"

    def _label(self, name: str) -> str:
        return f"{name}  " if self._labelled else ""

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
    """One JSON object per line: tunnel up and down, each exchange and WebSocket.

    Every line about a tunnel or a stream names its ``tunnel`` (``command_line``
    unless the client runs several).
    """

    def tunnel_active(self, tunnel: TunnelUp) -> None:
        latency = None if tunnel.latency is None else round(tunnel.latency * 1000, 1)
        self._event(
            "tunnel_active",
            tunnel=tunnel.name,
            url=tunnel.url,
            subdomain=tunnel.subdomain,
            forwarding=tunnel.local_origin,
            server=tunnel.server,
            latency_ms=latency,
            rules=list(tunnel.rules),
        )

    def subdomain_changed(self, name: str, previous: str, subdomain: str) -> None:
        self._event("subdomain_changed", tunnel=name, previous=previous, subdomain=subdomain)

    def tunnel_down(self, name: str, reason: str, retry_in: float) -> None:
        self._event("tunnel_down", tunnel=name, reason=reason, retry_in=round(retry_in, 1))

    def connect_failed(self, name: str, reason: str, retry_in: float) -> None:
        self._event("connect_failed", tunnel=name, reason=reason, retry_in=round(retry_in, 1))

    def local_unreachable(self, name: str, local_origin: str, reason: str) -> None:
        self._event("local_unreachable", tunnel=name, forwarding=local_origin, reason=reason)

    def refused_at_edge(self, name: str, method: str, path: str, status: int, rule: str) -> None:
        self._event("refused", tunnel=name, method=method, path=path, status=status, rule=rule)

    def exchange_finished(self, record: ExchangeRecord) -> None:
        self._exchange(record)

    def exchange_failed(self, record: ExchangeRecord, reason: str) -> None:
        self._exchange(record)

    def _exchange(self, record: ExchangeRecord) -> None:
        line = {
            "event": "exchange",
            "tunnel": record.tunnel,
            "stream": record.stream,
            "method": record.method,
            "path": record.path,
            "status": record.status,
        }
        _add_ending(line, record)
        self._line(_ENCODER.encode(line))

    def websocket_opened(self, record: SocketRecord) -> None:
        self._event("websocket_open", tunnel=record.tunnel, stream=record.stream, path=record.path)

    def websocket_closed(self, record: SocketRecord) -> None:
        self._websocket(record)

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        self._websocket(record)

    def _websocket(self, record: SocketRecord) -> None:
        line: dict[str, Any] = {
            "event": "websocket",
            "tunnel": record.tunnel,
            "stream": record.stream,
            "path": record.path,
        }
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
