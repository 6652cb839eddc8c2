"""The agent API's documents, in the shape of ngrok's (https://ngrok.com/docs/agent/api/).

Existing scripts and libraries (pyngrok, the npm package, ``jq '.tunnels[0]'``)
read these, so field names, nesting and units are ngrok's: durations and
percentiles in nanoseconds, header maps of lists, ``raw`` in base64. ``docs/agent-api.md``
lists them. Pure functions; ``routes`` fetches what they need.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

from ..events import Failure
from ..protocol import Headers
from .capture import TunnelInfo
from .store import HttpEntry
from .wire import raw_request, raw_response, remote_addr, status_line

TUNNELS_URI = "/api/tunnels"
ENDPOINTS_URI = "/api/endpoints"
REQUESTS_URI = "/api/requests/http"
STATUS_URI = "/api/status"


class ErrorCode:
    """Our ``error_code`` values (ngrok's shape; the numbers are ours, in docs/agent-api.md)."""

    BAD_REQUEST = 100
    NOT_FOUND = 101
    METHOD_NOT_ALLOWED = 102
    NOT_REPLAYABLE = 103
    FORBIDDEN = 104
    TOO_LARGE = 105
    NOT_SUPPORTED = 106
    INTERNAL = 107


def error(status: int, code: int, msg: str, err: str = "") -> dict[str, Any]:
    return {"error_code": code, "status_code": status, "msg": msg, "details": {"err": err or msg}}


def tunnel(info: TunnelInfo, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": info.name,
        "ID": info.id,
        "uri": f"{TUNNELS_URI}/{info.name}",
        "public_url": info.url,
        "proto": info.proto,
        "config": {"addr": info.local_origin, "inspect": True},
        "metrics": metrics,
    }


def tunnels(infos: list[tuple[TunnelInfo, dict[str, Any]]]) -> dict[str, Any]:
    """Each tunnel with its metrics; scripts take .tunnels[0], so an https tunnel
    comes first when there is one (else the client's order is kept)."""
    ordered = sorted(infos, key=lambda pair: pair[0].proto != "https")
    return {"tunnels": [tunnel(info, metrics) for info, metrics in ordered], "uri": TUNNELS_URI}


def endpoint(info: TunnelInfo) -> dict[str, Any]:
    """ngrok v3's endpoint: what the tunnel listing says, named as v3 names it."""
    return {
        "name": info.name,
        "uri": f"{ENDPOINTS_URI}/{info.name}",
        "url": info.url,
        "upstream": {"url": info.local_origin, "protocol": "http1"},
        "inspect": True,
    }


def endpoints(infos: list[TunnelInfo]) -> dict[str, Any]:
    ordered = sorted(infos, key=lambda info: info.proto != "https")
    return {"endpoints": [endpoint(info) for info in ordered], "uri": ENDPOINTS_URI}


def request(entry: HttpEntry, request_body: bytes, response_body: bytes) -> dict[str, Any]:
    """One captured request; ``response`` is null while in flight or when none came."""
    record = entry.record
    ms = record.ms
    return {
        "uri": f"{REQUESTS_URI}/{entry.id}",
        "id": entry.id,
        "tunnel_name": record.tunnel,
        "remote_addr": remote_addr(record.request_headers),
        "start": rfc3339(record.wall_started),
        "duration": 0 if ms is None else round(ms * 1e6),
        "request": {
            "method": record.method,
            "proto": "HTTP/1.1",
            "headers": header_map(record.request_headers),
            "uri": record.path,
            "raw": _b64(
                raw_request(record.method, record.path, record.request_headers, request_body)
            ),
        },
        "response": _response(entry, response_body),
    }


def _response(entry: HttpEntry, body: bytes) -> dict[str, Any] | None:
    record = entry.record
    status, headers = record.status, record.response_headers
    if status is None:
        if record.failure not in (Failure.LOCAL_ERROR, Failure.CLIENT_ERROR):
            return None
        # The server answered the public client 502 for us (README: the public side).
        status, headers = 502, [("Luminet-Error", "local-error")]
    return {
        "status": status_line(status),
        "status_code": status,
        "proto": "HTTP/1.1",
        "headers": header_map(headers),
        "raw": _b64(raw_response(status, headers, body)),
    }


def requests(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return {"uri": REQUESTS_URI, "requests": documents}


def status(infos: list[TunnelInfo], expected: int) -> dict[str, Any]:
    """``status`` is the agent's: online while it runs. ``session`` says how the
    tunnels are (online once all ``expected`` are up), each with its round trip."""
    if len(infos) < expected:
        state = "connecting"
    else:
        state = "online" if all(info.up for info in infos) else "reconnecting"
    session: dict[str, Any] = {"status": state}
    if infos:
        session["url"] = infos[0].url
    session["tunnels"] = [_session_tunnel(info) for info in infos]
    return {
        "status": "online",
        "agent_version": "luminet",
        "uri": STATUS_URI,
        "session": session,
    }


def _session_tunnel(info: TunnelInfo) -> dict[str, Any]:
    latency = None if info.latency is None else round(info.latency * 1e9)
    return {
        "name": info.name,
        "url": info.url,
        "status": "online" if info.up else "reconnecting",
        "latency": latency,  # nanoseconds, as every duration here
    }


_CANONICAL_RE = re.compile(r"[A-Za-z0-9-]+")


def canonical_name(name: str) -> str:
    """``x-api-key`` -> ``X-Api-Key``: Go's CanonicalMIMEHeaderKey, as in ngrok's header maps."""
    if not _CANONICAL_RE.fullmatch(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def header_map(headers: Headers) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in headers:
        result.setdefault(canonical_name(name), []).append(value)
    return result


def rfc3339(wall: float) -> str:
    """RFC 3339 in local time with its offset, to the second, as Go's time.RFC3339."""
    return datetime.fromtimestamp(wall, UTC).astimezone().isoformat(timespec="seconds")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
