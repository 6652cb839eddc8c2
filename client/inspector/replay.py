"""Replay: a stored request sent again to the local server, maybe edited, as a new exchange.

As ngrok does, a replay goes straight to the local server, not through the
public URL. It runs on the tunnel's own code path (``client.exchanges`` and
``client.forward``) with a loopback ``Wire`` playing the server's part, so it is
forwarded exactly as a tunnel request is and reported to ``Events`` like one:
the console prints it and the inspector lists it, marked as a replay.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass

from .. import protocol
from ..events import Events, Failure
from ..exchanges import ExchangeRunner, HttpStream
from ..flow import split_chunks
from ..forward import ConnectionPool, Exchange
from ..local import LocalAddress
from ..protocol import Headers, ProtocolError
from .store import HttpEntry, Store

logger = logging.getLogger(__name__)

#: Seconds the local server has to start answering a replay (the server's own default
#: for tunnel requests, LUMINET_REQUEST_TIMEOUT); then the replay is cancelled.
REPLAY_TIMEOUT = 30.0
#: Idle keep-alive connections kept to the local server for replays.
POOL_SIZE = 4
#: Methods whose empty body is still sent with ``Content-Length: 0``.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ReplayRefused(Exception):
    """This request cannot be sent again as it was; the message says why."""


@dataclass(frozen=True)
class Edits:
    """What "Replay with edits" changes; None keeps the stored value."""

    method: str | None = None
    path: str | None = None
    headers: Headers | None = None
    body: bytes | None = None


def why_not_replayable(entry: HttpEntry) -> str:
    """Why the stored request cannot be replayed unedited, or "" if it can."""
    record, body = entry.record, entry.request_body
    if record.outcome is None and record.status is None:
        return "the request is still in flight"
    if body.truncated:
        return "the request body was larger than the inspector keeps"
    try:
        declared = protocol.declared_length(record.request_headers)
    except ProtocolError:
        declared = None
    if declared is not None and declared != body.seen:
        return "the request body did not arrive whole"
    return ""


def replay_request(
    entry: HttpEntry, stored_body: bytes, edits: Edits | None, stream: int
) -> tuple[protocol.Request, bytes]:
    """The request to send, and its body: the stored one, or with ``edits`` applied."""
    record = entry.record
    # An edited body replaces the stored one, so only an unedited body must be whole.
    if (edits is None or edits.body is None) and (problem := why_not_replayable(entry)):
        raise ReplayRefused(problem)
    if edits is None:
        headers, body, method, path = (
            record.request_headers,
            stored_body,
            record.method,
            record.path,
        )
    else:
        method = record.method if edits.method is None else edits.method.strip().upper()
        path = record.path if edits.path is None else edits.path.strip()
        body = stored_body if edits.body is None else edits.body
        given = record.request_headers if edits.headers is None else edits.headers
        try:
            protocol.validate_target(method, path)
            headers = _framed(
                protocol.end_to_end(protocol.validate_headers(list(given))), method, body
            )
        except ProtocolError as exc:
            raise ReplayRefused(str(exc)) from exc
    request = protocol.Request(stream, method, path, list(headers), body=bool(body))
    return request, body


def _framed(headers: Headers, method: str, body: bytes) -> Headers:
    """The headers with a Content-Length that tells the body's true length."""
    kept = [(name, value) for name, value in headers if name.lower() != "content-length"]
    if body or method in _BODY_METHODS:
        kept.append(("Content-Length", str(len(body))))
    return kept


class _LoopbackWire:
    """The server's part for one replayed stream: hands the request body over as the
    runner gives credit, and credits each response chunk at once (no one downstream)."""

    def __init__(self, stream: HttpStream, body: bytes) -> None:
        self._stream = stream
        self._chunks = deque(split_chunks(body)) if stream.request.body else deque()

    def open(self) -> None:
        """What a server may send before any credit: the first window of the body."""
        self._feed(protocol.INITIAL_REQUEST_CHUNKS)

    def send(self, message: protocol.ControlMessage) -> None:
        if isinstance(message, protocol.Window):
            self._feed(message.chunks)

    def send_data(self, message: protocol.BinaryMessage) -> None:
        if isinstance(message, protocol.Data):
            self._stream.credit(1)

    def _feed(self, chunks: int) -> None:
        for _ in range(chunks):
            if not self._chunks:
                return
            chunk = self._chunks.popleft()
            self._stream.chunk_received(chunk, end=not self._chunks)


class Replayer:
    """Sends stored requests to their tunnel's local server, one thread each.

    ``locals_`` holds each tunnel's local address, by name, with its
    ``--host-header`` choice, so a replay shows the local server the Host a
    tunnel request would; it is reported as an exchange of that tunnel.
    """

    def __init__(
        self,
        locals_: dict[str, LocalAddress],
        events: Events,
        store: Store,
        timeout: float = REPLAY_TIMEOUT,
    ) -> None:
        self._pools = {name: ConnectionPool(local, POOL_SIZE) for name, local in locals_.items()}
        self._events = {name: events.named(name) for name in locals_}
        self._store = store
        self._timeout = timeout
        # Above every tunnel stream id, so a replay never shares one with a tunnel stream.
        self._stream_ids = itertools.count(protocol.MAX_STREAM_ID + 1)
        self._running: set[HttpStream] = set()
        self._lock = threading.Lock()

    def replay(self, entry: HttpEntry, edits: Edits | None = None, tunnel: str = "") -> str:
        """Start sending ``entry``'s request again, to ``tunnel``'s local server (by
        default the one it came through); return the new exchange's id at once."""
        tunnel = tunnel or entry.record.tunnel
        if tunnel not in self._pools:
            raise ReplayRefused(f"there is no tunnel {tunnel!r} to replay it on")
        request, body = replay_request(
            entry, self._store.body(entry.request_body), edits, next(self._stream_ids)
        )
        stream = HttpStream(request)
        events = self._events[tunnel]
        self._store.will_replay(stream.record, entry.id)
        events.exchange_started(stream.record)
        new_id = self._store.id_of(stream.record)
        wire = _LoopbackWire(stream, body)
        wire.open()
        with self._lock:
            self._running.add(stream)
        thread = threading.Thread(
            target=self._serve,
            args=(stream, wire, tunnel),
            name=f"replay-{entry.id}",
            daemon=True,
        )
        thread.start()
        return new_id

    def close(self) -> None:
        """Cancel the replays still running and close the idle connections."""
        with self._lock:
            running = list(self._running)
        for stream in running:
            stream.cancel(Failure.CANCELLED)
        for pool in self._pools.values():
            pool.close()

    def _serve(self, stream: HttpStream, wire: _LoopbackWire, tunnel: str) -> None:
        pool = self._pools[tunnel]
        runner = ExchangeRunner(wire, lambda request: Exchange(pool, request), self._events[tunnel])
        timer = threading.Timer(self._timeout, self._give_up, args=(stream,))
        timer.daemon = True
        timer.start()
        try:
            runner.serve(stream)
        finally:
            timer.cancel()
            with self._lock:
                self._running.discard(stream)

    def _give_up(self, stream: HttpStream) -> None:
        if stream.record.status is None:
            logger.info("a replay got no response in %.0f s; cancelled", self._timeout)
            stream.cancel(Failure.CANCELLED)
