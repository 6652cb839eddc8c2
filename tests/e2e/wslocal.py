"""The developer's local WebSocket server, as the tunnel sees it: real ``websockets``.

A ``websockets`` server on 127.0.0.1:0, run by a thread with its own event loop.
Every WebSocket echoes what it receives, message for message and type for type;
a text message ``CLOSE_COMMAND + "<code> <reason>"`` makes the local server close
with that code and reason instead; WebSockets on paths given to
:meth:`WsLocalServer.stall` are never read, and those on paths given to
:meth:`WsLocalServer.flood` are sent messages until they close. Each handshake,
each close frame the local server received (as it arrives) and the end of each
connection (when TCP closed) are recorded for the test. Paths given to
:meth:`WsLocalServer.route` get a plain HTTP answer instead of a WebSocket (a
refusal, or a page for a browser).

Also a small public client, :func:`connect`, that reaches ``<sub>.localhost`` on
the tunnel server's port through 127.0.0.1 (Python cannot resolve ``*.localhost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

#: A text message that asks the local server to close: "<code> <reason>" follows.
CLOSE_COMMAND = "close-please:"
#: Subprotocols the local server speaks, best first.
SUBPROTOCOLS = ("chat", "v2")
#: Seconds the local server waits for the client to close TCP after a closing handshake.
CLOSE_TIMEOUT = 5.0
#: Seconds for the server to start, and the default wait for a record.
TIMEOUT = 10.0
#: Bytes of each message a flooded WebSocket is sent (WsLocalServer.flood).
FLOOD_MESSAGE = 2**20

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class HttpReply:
    """A plain HTTP answer the local server gives instead of upgrading."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    #: More header lines, sent after the framing ones.
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Seen:
    """One request as it reached the local server."""

    #: Path and query string, exactly as received.
    target: str
    headers: Pairs
    #: True for a WebSocket that opened; False for a request answered with HttpReply.
    upgraded: bool
    subprotocol: str | None
    arrived: float

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


@dataclass(frozen=True)
class Closed:
    """A close frame the local server received."""

    target: str
    code: int
    reason: str
    arrived: float


@dataclass(frozen=True)
class Ended:
    """A WebSocket connection of the local server that is over: TCP closed."""

    target: str
    at: float


class WsLocalServer:
    """A real WebSocket (and minimal HTTP) server on 127.0.0.1 for the tunnel client."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._seen: list[Seen] = []
        self._closed: list[Closed] = []
        self._ended: list[Ended] = []
        self._routes: dict[str, HttpReply] = {}
        self._greetings: dict[str, str] = {}
        self._stalled: set[str] = set()
        self._flooded: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="ws-local-server", daemon=True
        )
        self._thread.start()
        if not started.wait(TIMEOUT):
            raise AssertionError(f"the local WebSocket server did not start in {TIMEOUT} s")
        if self._error is not None:
            self._thread.join(TIMEOUT)
            raise AssertionError(f"the local WebSocket server failed: {self._error!r}")

    # -- configuration and records, from the test's thread -----------------

    def route(self, path: str, reply: HttpReply) -> None:
        """Answer any request for ``path`` (no query) with ``reply`` instead of upgrading."""
        with self._cond:
            self._routes[path] = reply

    def stall(self, path: str) -> None:
        """Never read from WebSockets opened on ``path``: TCP pushes back once buffers fill."""
        with self._cond:
            self._stalled.add(path)

    def flood(self, path: str) -> None:
        """Send FLOOD_MESSAGE-byte messages on WebSockets opened on ``path`` until they close."""
        with self._cond:
            self._flooded.add(path)

    def greet(self, path: str, text: str) -> None:
        """Send ``text`` first on every WebSocket opened on ``path`` (no query)."""
        with self._cond:
            self._greetings[path] = text

    def seen(self, predicate: Callable[[Seen], bool] = lambda s: True) -> list[Seen]:
        with self._cond:
            return [s for s in self._seen if predicate(s)]

    def wait_seen(self, predicate: Callable[[Seen], bool], timeout: float = TIMEOUT) -> Seen:
        """The first request matching ``predicate``, waiting up to ``timeout``."""
        return self._wait(lambda: next((s for s in self._seen if predicate(s)), None), timeout)

    def wait_close_frame(self, target: str, timeout: float = TIMEOUT) -> Closed:
        """The close frame received on the WebSocket for ``target``, waiting up to ``timeout``."""
        return self._wait(lambda: _find(self._closed, target), timeout)

    def ended(self, target: str, timeout: float) -> Ended | None:
        """The end of the connection for ``target``; None if still open after ``timeout``."""
        return self._wait(lambda: _find(self._ended, target), timeout, required=False)

    def stop(self) -> None:
        stopping = self._stopping
        if stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(stopping.set)
        # Closing waits for open connections, each for at most CLOSE_TIMEOUT.
        self._thread.join(TIMEOUT + CLOSE_TIMEOUT)
        assert not self._thread.is_alive(), "the local WebSocket server did not stop"
        if self._error is not None:
            raise AssertionError(f"the local WebSocket server failed: {self._error!r}")

    def _wait(self, find: Callable[[], Any], timeout: float, required: bool = True) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (found := find()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 and not required:
                    return None
                if remaining <= 0:
                    targets = "\n".join(f"  {s.target}" for s in self._seen[-20:])
                    raise AssertionError(
                        f"the local WebSocket server saw nothing matching in {timeout} s "
                        f"({len(self._closed)} close frames, {len(self._ended)} ended); "
                        f"last seen:\n{targets}"
                    )
                self._cond.wait(remaining)
            return found

    def _record(self, item: Seen | Closed | Ended) -> None:
        with self._cond:
            match item:
                case Seen():
                    self._seen.append(item)
                case Closed():
                    self._closed.append(item)
                case Ended():
                    self._ended.append(item)
            self._cond.notify_all()

    # -- the server, on its own thread and loop ----------------------------

    def _run(self, started: threading.Event) -> None:
        try:
            self._loop.run_until_complete(self._serve(started))
        except BaseException as exc:
            self._error = exc
        finally:
            started.set()
            self._loop.close()

    async def _serve(self, started: threading.Event) -> None:
        self._stopping = asyncio.Event()
        record = self._record

        class Connection(ServerConnection):
            """Records a close frame when it arrives, not when the connection ends."""

            close_recorded = False

            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                received = self.protocol.close_rcvd
                if received is not None and not self.close_recorded and self.request:
                    self.close_recorded = True
                    record(
                        Closed(self.request.path, received.code, received.reason, time.monotonic())
                    )

        async with serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            # Keepalive pings would only add traffic the tests do not ask for.
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT,
            # As large as the tunnel carries (client.protocol.MAX_WS_MESSAGE), and more.
            max_size=None,
            create_connection=Connection,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            await self._stopping.wait()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        with self._cond:
            reply = self._routes.get(request.path.split("?", 1)[0])
        if reply is None:
            return None
        self._record(Seen(request.path, _pairs(request.headers), False, None, time.monotonic()))
        headers = Headers(
            [
                ("Content-Type", reply.content_type),
                ("Content-Length", str(len(reply.body))),
                ("Connection", "close"),
                *reply.headers,
            ]
        )
        return Response(reply.status, HTTPStatus(reply.status).phrase, headers, reply.body)

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        target = request.path
        self._record(Seen(target, _pairs(request.headers), True, ws.subprotocol, time.monotonic()))
        with self._cond:
            greeting = self._greetings.get(target.split("?", 1)[0])
            stalled = target.split("?", 1)[0] in self._stalled
            flooded = target.split("?", 1)[0] in self._flooded
        try:
            if stalled:
                await ws.wait_closed()
            if flooded:
                flood = bytes(FLOOD_MESSAGE)
                while True:  # ends with ConnectionClosed; each send waits on the reader
                    await ws.send(flood)
            if greeting is not None:
                await ws.send(greeting)
            async for message in ws:
                if isinstance(message, str) and message.startswith(CLOSE_COMMAND):
                    code, _, reason = message.removeprefix(CLOSE_COMMAND).partition(" ")
                    await ws.close(int(code), reason)
                    break
                await ws.send(message)
        except ConnectionClosed:
            pass  # the close frame, if any, is recorded by Connection
        finally:
            # Both ``async for`` and close() return once TCP is closed.
            self._record(Ended(target, time.monotonic()))


def _find(items: Sequence[Closed] | Sequence[Ended], target: str) -> Closed | Ended | None:
    return next((item for item in items if item.target == target), None)


def _select_subprotocol(protocol: ServerProtocol, offered: Sequence[str]) -> str | None:
    # The local server's choice, by its own preference; none offered is fine too.
    return next((p for p in SUBPROTOCOLS if p in offered), None)


def _pairs(headers: Headers) -> Pairs:
    return list(headers.raw_items())


def connect(port: int, host: str, target: str, **options: Any) -> ClientConnection:
    """Open a public WebSocket to ``ws://<host>:<port><target>`` via 127.0.0.1:<port>."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        return ws_connect(
            f"ws://{host}:{port}{target}",
            sock=sock,
            open_timeout=TIMEOUT,
            close_timeout=TIMEOUT,
            **options,
        )
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise
