"""What the inspector's page gets: a row per entry, and one entry in detail. No I/O.

The page's own JSON (``/inspector/...``), not the agent API: shaped for the
page, free to change with it. Bodies are passed in, copied from the store.
"""

from __future__ import annotations

from typing import Any

from ..console import status_text
from ..events import FAILURE_TEXT
from ..protocol import Headers, header_values
from .curl import curl_command
from .render import render
from .replay import why_not_replayable
from .store import Entry, HttpEntry, Message, SocketEntry
from .wire import public_url, reason, remote_addr

#: Bytes of a binary WebSocket message shown as hex in the list of messages.
BINARY_PREVIEW = 64


def summary(entry: Entry) -> dict[str, Any]:
    """One row of the live list."""
    if isinstance(entry, HttpEntry):
        record = entry.record
        return {
            "id": entry.id,
            "tunnel": record.tunnel,
            "kind": "http",
            "time": round(record.wall_started * 1000),
            "method": record.method,
            "path": record.path,
            "status": record.status,
            "status_text": status_text(record),
            "ms": _ms(record.ms),
            "size": record.bytes_out,
            "in_flight": record.outcome is None,
            "failed": record.failure is not None,
            "replay_of": entry.replay_of,
            "edge": record.edge_rule,
        }
    assert isinstance(entry, SocketEntry)
    socket = entry.record
    return {
        "id": entry.id,
        "tunnel": socket.tunnel,
        "kind": "ws",
        "time": round(socket.wall_started * 1000),
        "method": "WS",
        "path": socket.path,
        "status": 101 if socket.accepted_at is not None else None,
        "status_text": _socket_state(entry),
        "ms": _ms(socket.ms),
        "size": socket.bytes_in + socket.bytes_out,
        "in_flight": socket.outcome is None,
        "failed": socket.failure is not None,
        "replay_of": None,
        "messages": socket.messages_in + socket.messages_out,
    }


def http_detail(
    entry: HttpEntry, request_body: bytes, response_body: bytes, tunnel_url: str
) -> dict[str, Any]:
    """Heads, bodies as shown, the cURL command, and whether and how it can be replayed."""
    record = entry.record
    headers = record.request_headers
    detail = summary(entry)
    why_not = why_not_replayable(entry)
    detail.update(
        {
            "remote_addr": remote_addr(headers),
            "reason": record.reason,
            "request": {
                "headers": _pairs(headers),
                "body": render(headers, request_body, entry.request_body.seen).document(),
            },
            "response": None,
            "curl": curl_command(
                record.method, public_url(headers, record.path, tunnel_url), headers, request_body
            ),
            "curl_complete": not entry.request_body.truncated,
            "replayable": not why_not,
            "why_not": why_not,
            "edit": {
                "method": record.method,
                "path": record.path,
                "headers": "\n".join(f"{name}: {value}" for name, value in headers),
                "body": _editable_text(entry, headers, request_body),
            },
        }
    )
    if record.status is not None:
        detail["response"] = {
            "status": record.status,
            "reason": reason(record.status),
            "headers": _pairs(record.response_headers),
            "body": render(
                record.response_headers, response_body, entry.response_body.seen
            ).document(),
        }
    return detail


def socket_detail(entry: SocketEntry, messages: list[Message], dropped: int) -> dict[str, Any]:
    """The handshake, how the socket ended, and its messages (previews)."""
    socket = entry.record
    detail = summary(entry)
    detail.update(
        {
            "remote_addr": remote_addr(socket.request_headers),
            "reason": socket.reason,
            "request": {"headers": _pairs(socket.request_headers)},
            "subprotocol": socket.subprotocol,
            "code": socket.code,
            "closed_by": socket.closed_by,
            "messages_dropped": dropped,
            "message_list": [_message(message) for message in messages],
        }
    )
    return detail


def _message(message: Message) -> dict[str, Any]:
    if message.text:
        preview = message.preview.decode("utf-8", "replace")
    else:
        preview = message.preview[:BINARY_PREVIEW].hex(" ")
    return {
        "time": round(message.wall * 1000),
        # Seen from the local server, as bytes_in and bytes_out are (README).
        "direction": "in" if message.from_public else "out",
        "text": message.text,
        "size": message.size,
        "preview": preview,
        "cut": message.size > (len(message.preview) if message.text else BINARY_PREVIEW),
    }


def _editable_text(entry: HttpEntry, headers: Headers, body: bytes) -> str | None:
    """The body as text to edit, when it is text kept whole; None keeps it as it was."""
    if entry.request_body.truncated or header_values(headers, "content-encoding"):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _socket_state(entry: SocketEntry) -> str:
    socket = entry.record
    if socket.failure is not None:
        return FAILURE_TEXT[socket.failure]
    if socket.outcome == "closed":
        return "closed" if socket.code is None else f"closed {socket.code}"
    return "open" if socket.accepted_at is not None else "opening"


def _pairs(headers: Headers) -> list[list[str]]:
    return [[name, value] for name, value in headers]


def _ms(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 1)
