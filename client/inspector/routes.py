"""Each URL of the inspector's server, as glue: read the request, ask, encode.

- the page: ``/`` (and ``/inspect/http``, ngrok's address for it) and ``/static/...``;
- the page's own JSON under ``/inspector/``: entries, one entry, replay with edits,
  clear, HAR, and ``/inspector/events``, the live list as Server-Sent Events;
- the agent API under ``/api/``, shaped as ngrok's (``docs/agent-api.md``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from . import agent, views
from .agent import ErrorCode
from .capture import Capture, TunnelInfo
from .har import HarExchange, har
from .replay import Edits, Replayer, ReplayRefused
from .store import HttpEntry, SocketEntry
from .web import ApiError, Request, Response, Router

#: Seconds between two comments on an idle event stream, so proxies and the
#: browser see it alive and a page that went away is noticed.
KEEPALIVE_SECONDS = 15.0
#: Seconds at least between two updates of the live list: a burst of requests
#: costs one update, not one per request.
UPDATE_INTERVAL = 0.1
#: The page's files, read once (``importlib.resources`` also reads them from a zipapp).
PAGE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
#: The page runs only its own script and style, and loads nothing from elsewhere.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Page:
    files: dict[str, bytes]

    @classmethod
    def load(cls) -> Page:
        folder = resources.files(__package__).joinpath("page")
        return cls({name: folder.joinpath(name).read_bytes() for name in PAGE_FILES})


class Routes:
    """The handlers, bound to one inspector's capture, store and replayer."""

    def __init__(self, capture: Capture, replayer: Replayer, page: Page) -> None:
        self._capture = capture
        self._store = capture.store
        self._replayer = replayer
        self._page = page

    def router(self) -> Router:
        router = Router()
        for path in ("/", "/inspect/http"):
            router.add("GET", path, self.index)
        router.add("GET", r"/static/(app\.js|app\.css)", self.static)
        router.add("GET", "/inspector/entries", self.entries)
        router.add("DELETE", "/inspector/entries", self.clear)
        router.add("GET", "/inspector/entries/([0-9a-f]+)", self.entry)
        router.add("POST", "/inspector/entries/([0-9a-f]+)/replay", self.replay_entry)
        router.add("GET", "/inspector/events", self.events)
        router.add("GET", "/inspector/har", self.har)
        router.add("GET", "/api/tunnels", self.tunnels)
        router.add("POST", "/api/tunnels", self.start_tunnel)
        router.add("GET", "/api/tunnels/([^/]+)", self.tunnel)
        router.add("DELETE", "/api/tunnels/([^/]+)", self.stop_tunnel)
        router.add("GET", "/api/endpoints", self.endpoints)
        router.add("GET", "/api/endpoints/([^/]+)", self.endpoint)
        router.add("GET", "/api/requests/http", self.requests)
        router.add("POST", "/api/requests/http", self.replay)
        router.add("DELETE", "/api/requests/http", self.clear)
        router.add("GET", "/api/requests/http/([^/]+)", self.request)
        router.add("GET", "/api/status", self.status)
        return router

    # -- the page -------------------------------------------------------------

    def index(self, request: Request) -> Response:
        return self._file("index.html")

    def static(self, request: Request, name: str) -> Response:
        return self._file(name)

    def _file(self, name: str) -> Response:
        headers = [("Content-Security-Policy", PAGE_POLICY)]
        return Response(200, self._page.files[name], PAGE_FILES[name], headers)

    def entries(self, request: Request) -> Response:
        return Response.json({"entries": [views.summary(e) for e in self._store.entries()]})

    def entry(self, request: Request, entry_id: str) -> Response:
        entry = self._store.get(entry_id)
        if isinstance(entry, HttpEntry):
            tunnel = self._capture.tunnels.get(entry.record.tunnel)
            return Response.json(
                views.http_detail(
                    entry,
                    self._store.body(entry.request_body),
                    self._store.body(entry.response_body),
                    "" if tunnel is None else tunnel.url,
                )
            )
        if isinstance(entry, SocketEntry):
            messages, dropped = self._store.messages(entry)
            return Response.json(views.socket_detail(entry, messages, dropped))
        raise _no_entry(entry_id)

    def replay_entry(self, request: Request, entry_id: str) -> Response:
        """Replay, with the edits the body gives (method, path, headers, body: all optional)."""
        data = request.json()
        edits = None
        if data:
            edits = Edits(
                method=_optional_str(data, "method"),
                path=_optional_str(data, "path"),
                headers=_optional_headers(data),
                body=None if (body := _optional_str(data, "body")) is None else body.encode(),
            )
        return Response.json({"id": self._replay(entry_id, edits)})

    def clear(self, request: Request) -> Response:
        self._store.clear()
        return Response(204)

    def events(self, request: Request) -> Response:
        since = request.headers.get("last-event-id", "")
        version = int(since) if since.isdigit() else 0
        if version > self._store.version:  # another run of the client: start over
            version = 0
        headers = [("X-Accel-Buffering", "no")]
        return Response(
            200,
            content_type="text/event-stream",
            headers=headers,
            stream=self._event_stream(version),
        )

    def _event_stream(self, version: int) -> Iterator[bytes]:
        """Each change of the list: the ids kept, the rows that changed, the tunnel."""
        yield b"retry: 1000\n\n"
        first = True
        while not self._store.closed:
            now, ids, changed = self._store.changes(version)
            if now != version or first:
                update = {
                    "version": now,
                    "ids": ids,
                    "entries": [views.summary(entry) for entry in changed],
                    "tunnels": self._tunnel_summaries(),
                }
                yield f"id: {now}\ndata: {json.dumps(update, separators=(',', ':'))}\n\n".encode()
                version, first = now, False
                time.sleep(UPDATE_INTERVAL)
            if self._store.wait(version, KEEPALIVE_SECONDS) == version:
                yield b": keep-alive\n\n"

    def _tunnel_summaries(self) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "url": t.url, "local": t.local_origin, "up": t.up}
            for t in self._tunnels()
        ]

    def har(self, request: Request) -> Response:
        exchanges = [
            self._har_exchange(entry)
            for entry in self._store.entries()
            if isinstance(entry, HttpEntry) and entry.record.outcome is not None
        ]
        document = Response.json(har(exchanges)).body
        disposition = ("Content-Disposition", 'attachment; filename="luminet.har"')
        return Response(200, document, headers=[disposition])

    def _har_exchange(self, entry: HttpEntry) -> HarExchange:
        record = entry.record
        response_at = record.response_at if record.response_at is not None else record.started
        ended = record.ended if record.ended is not None else response_at
        return HarExchange(
            wall_started=record.wall_started,
            method=record.method,
            path=record.path,
            request_headers=record.request_headers,
            request_body=self._store.body(entry.request_body),
            request_seen=entry.request_body.seen,
            status=record.status,
            response_headers=record.response_headers,
            response_body=self._store.body(entry.response_body),
            response_seen=entry.response_body.seen,
            wait_ms=(response_at - record.started) * 1000,
            total_ms=(ended - record.started) * 1000,
            failure=record.reason,
        )

    # -- the agent API ----------------------------------------------------------

    def tunnels(self, request: Request) -> Response:
        metrics = self._capture.metrics
        return Response.json(
            agent.tunnels([(info, metrics[info.name].document()) for info in self._tunnels()])
        )

    def tunnel(self, request: Request, name: str) -> Response:
        info = self._tunnel_named(name)
        return Response.json(agent.tunnel(info, self._capture.metrics[name].document()))

    def start_tunnel(self, request: Request) -> Response:
        raise ApiError(
            501,
            ErrorCode.NOT_SUPPORTED,
            "this agent's tunnels are set when it starts",
            "name them in ~/.tunnel/config and run `start NAME...`, or repeat --port",
        )

    def stop_tunnel(self, request: Request, name: str) -> Response:
        self._tunnel_named(name)
        raise ApiError(
            501, ErrorCode.NOT_SUPPORTED, "this agent's tunnels stop with it", "stop the client"
        )

    def endpoints(self, request: Request) -> Response:
        return Response.json(agent.endpoints(self._tunnels()))

    def endpoint(self, request: Request, name: str) -> Response:
        return Response.json(agent.endpoint(self._tunnel_named(name)))

    def requests(self, request: Request) -> Response:
        limit = request.param("limit")
        if limit is not None and not (limit.isdigit() and int(limit) > 0):
            raise ApiError(
                400, ErrorCode.BAD_REQUEST, "limit must be a positive integer", f"limit={limit}"
            )
        name = request.param("tunnel_name")
        entries = [
            e
            for e in reversed(self._store.entries())
            if isinstance(e, HttpEntry) and name in (None, e.record.tunnel)
        ]
        if limit is not None:
            entries = entries[: int(limit)]
        return Response.json(agent.requests([self._request_document(e) for e in entries]))

    def request(self, request: Request, entry_id: str) -> Response:
        entry = self._store.get(entry_id)
        if not isinstance(entry, HttpEntry):
            raise _no_entry(entry_id)
        return Response.json(self._request_document(entry))

    def replay(self, request: Request) -> Response:
        """ngrok's replay: ``{"id": ..., "tunnel_name": ...}`` (or ``tunnelName``; null is fine)."""
        data = request.json()
        entry_id = data.get("id")
        if not isinstance(entry_id, str) or not entry_id:
            raise ApiError(400, ErrorCode.BAD_REQUEST, "the body must name the request's id")
        # ngrok: the tunnel to play it against; by default the one it came through.
        name = data.get("tunnel_name", data.get("tunnelName"))
        if name is not None:
            if not isinstance(name, str):
                raise ApiError(400, ErrorCode.BAD_REQUEST, "tunnel_name must be a string")
            self._tunnel_named(name)
        self._replay(entry_id, None, name or "")
        return Response(204)

    def status(self, request: Request) -> Response:
        return Response.json(agent.status(self._tunnels(), len(self._capture.metrics)))

    # -- shared ---------------------------------------------------------------

    def _replay(self, entry_id: str, edits: Edits | None, tunnel: str = "") -> str:
        entry = self._store.get(entry_id)
        if not isinstance(entry, HttpEntry):
            raise _no_entry(entry_id)
        try:
            return self._replayer.replay(entry, edits, tunnel)
        except ReplayRefused as exc:
            raise ApiError(
                409, ErrorCode.NOT_REPLAYABLE, "cannot replay this request", str(exc)
            ) from exc

    def _request_document(self, entry: HttpEntry) -> dict[str, Any]:
        return agent.request(
            entry, self._store.body(entry.request_body), self._store.body(entry.response_body)
        )

    def _tunnels(self) -> list[TunnelInfo]:
        return list(self._capture.tunnels.values())

    def _tunnel_named(self, name: str) -> TunnelInfo:
        tunnel = self._capture.tunnels.get(name)
        if tunnel is None:
            raise ApiError(404, ErrorCode.NOT_FOUND, f"tunnel {name!r} not found")
        return tunnel


def _no_entry(entry_id: str) -> ApiError:
    return ApiError(404, ErrorCode.NOT_FOUND, f"request {entry_id!r} not found")


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, ErrorCode.BAD_REQUEST, f"{key} must be a string")
    return value


def _optional_headers(data: dict[str, Any]) -> list[tuple[str, str]] | None:
    """``headers``: a list of ``[name, value]`` pairs (checked again by the replay)."""
    value = data.get("headers")
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        for pair in value
    ):
        raise ApiError(400, ErrorCode.BAD_REQUEST, "headers must be a list of [name, value] pairs")
    return [(name, value) for name, value in value]
