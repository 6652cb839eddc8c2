"""daphne, with three defects fixed where they live. ``manage.py serve`` runs this.

Stock daphne 4.2 (measured in issue 3):

1. No backpressure: an application's ``send()`` never waits, so a fast producer
   and a slow reader pile the whole response up in memory (a 500 MB response to a
   10 MB/s reader peaked at 1 GB). Here the request registers a push producer with
   Twisted; the transport pauses and resumes it around its write buffer, and
   ``send()`` of a body chunk waits while it is paused.
2. Uploads: Twisted writes every body over 100 kB to a temporary file and hands
   the request over only once the whole body is in; daphne then pushes all of it
   into the application's queue at once (a 500 MB POST held 590 MB). Here the
   application starts on the request head (``LuminetHTTPChannel``) and reads the
   body from a bounded in-memory pipe as it arrives, the connection pausing while
   the pipe is full; nothing reaches the disk (issue 8).
3. Aborts: if the application fails after the response has started, daphne tries
   to send a 500 page, fails, leaves the client hanging and kills its
   ``application_checker`` loop for good. Here the connection is aborted (a TCP
   reset: the client sees an error, never a clean end of a truncated body), and
   so is a started response that times out.

WebSockets (daphne 4.2.3 drops a server close's reason, silently skips empty
messages, always refuses a handshake with 403 and never passes the client's close
reason on): ``LuminetWebSocketProtocol`` sends close codes and reasons as given,
sends empty messages, answers ``websocket.http.response.*`` (the ASGI denial
extension) with the application's status, and adds ``reason`` to
``websocket.disconnect``.

This leans on daphne and Twisted internals (``WebRequest._response_started``,
``WebRequest.content``, ``Server.http_factory``, ``HTTPChannel``'s request
callbacks), so daphne is pinned to 4.2.x
and ``tests/server/`` holds a regression test for each defect: an upgrade that
breaks one of these hooks fails there first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from autobahn.twisted.websocket import ConnectionDeny
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from django.conf import settings
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.http import (
    HTTPChannel,
    _ChunkedTransferDecoder,
    _GenericHTTPChannelProtocol,
    _MalformedChunkedDataError,
)
from zope.interface import implementer

from client.protocol import (
    CHUNK_SIZE,
    FRAME_HEADER,
    MAX_CONTROL_BYTES,
    MAX_WS_MESSAGE,
    CloseCode,
)
from tunnels import drain, usage
from tunnels.edge.budget import UNLIMITED, Account, BudgetLimits, MemoryBudget, budget_key
from tunnels.hosts import TunnelHost, classify
from tunnels.relay.errors import TunnelError
from tunnelsite.connections import ConnectionGuard, ConnectionLimits

logger = logging.getLogger(__name__)

#: Body bytes held per request before the connection stops reading: half the
#: tunnel's 2 MiB window, so an upload keeps the window full without a disk copy.
BODY_HIGH_WATER = 1024 * 1024
#: Seconds body bytes may wait for more to join them in one message to the
#: application: uploads arrive about 48 KB per socket read, and without this each
#: read became its own channel-layer message (200 MB in 4,200 messages).
BODY_COALESCE_SECONDS = 0.001
#: Seconds a WebSocket we close waits for the peer's close frame before the TCP
#: connection is dropped. autobahn's 1 s was too short for a peer with megabytes
#: of frames still in flight (the close answer queues behind them); dropping with
#: unread bytes resets the connection, and the peer never sees our close code.
CLOSE_HANDSHAKE_TIMEOUT = 10.0
#: Largest message a socket to the main host (the tunnel endpoint) may send: a
#: control message or a body chunk with its frame header; more is a protocol error
#: anyway, and is refused (1009) before it is held.
MAX_TUNNEL_MESSAGE = max(MAX_CONTROL_BYTES, FRAME_HEADER.size + CHUNK_SIZE)
#: Seconds a connection answered before its body ended keeps draining before it is
#: closed outright.
LINGER_SECONDS = 5.0


@implementer(IPushProducer)
class _Backpressure:
    """The transport's pause/resume signal, as something a coroutine can wait on."""

    def __init__(self, paused: bool) -> None:
        self._writable = asyncio.Event()
        if not paused:
            self._writable.set()

    def pauseProducing(self) -> None:
        self._writable.clear()

    def resumeProducing(self) -> None:
        self._writable.set()

    def stopProducing(self) -> None:
        # The connection is gone: let any waiter go; its next send is dropped.
        self._writable.set()

    async def wait(self) -> None:
        await self._writable.wait()


class _EmptyBody:
    """Stands in for Twisted's body file: the body streams through ``_BodyPipe``."""

    closed = False

    def read(self, size: int = -1) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        raise AssertionError("request bodies go to the pipe, never to a file")

    def close(self) -> None:
        pass


class _BodyPipe:
    """A request body on its way from the socket to the application, in memory.

    Holds at most about ``BODY_HIGH_WATER`` bytes: past that the connection stops
    reading (TCP backpressure on the caller) until the application has taken half.
    While its tunnel or the process is over its memory budget (``account``), it
    stops reading as soon as it holds anything, and reads on once that is taken.
    Twisted would instead write every body over 100 kB to a temporary file, in full
    and before the application sees the request (issue 8: 1 GiB on disk for a
    request to a tunnel that did not exist).
    """

    def __init__(
        self, pause: Callable[[], None], resume: Callable[[], None], account: Account
    ) -> None:
        self._buffer = bytearray()
        self._pause, self._resume = pause, resume
        self._account = account
        self._paused = False
        self._ready = asyncio.Event()
        self._wanted = BODY_HIGH_WATER
        self._coalescing: asyncio.TimerHandle | None = None
        #: Every byte of the body has arrived (it may still sit in the buffer).
        self.complete = False
        #: The caller went away first.
        self.gone = False

    @property
    def drained(self) -> bool:
        return self.complete and not self._buffer

    def write(self, data: bytes) -> None:
        if self.gone:
            return
        self._buffer += data
        within_budget = self._account.charge(len(data))
        if len(self._buffer) >= self._wanted:
            self._wake()
        elif self._coalescing is None:
            # Let what follows at once travel in the same message: each message
            # costs a channel-layer hop. Bytes wait at most BODY_COALESCE_SECONDS.
            self._coalescing = asyncio.get_running_loop().call_later(
                BODY_COALESCE_SECONDS, self._wake
            )
        # Checked on every write: Twisted's own write-side flow control may resume
        # reading under us, and then the next write pauses it again.
        if len(self._buffer) >= BODY_HIGH_WATER or not within_budget:
            self._paused = True
            self._pause()

    def _wake(self) -> None:
        if self._coalescing is not None:
            self._coalescing.cancel()
            self._coalescing = None
        self._ready.set()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def abort(self) -> None:
        """The caller went away, or the response ended: what is held is dropped."""
        self.gone = True
        self._buffer.clear()
        self._account.close()
        self._wake()

    async def read(self, size: int, wait: bool = True) -> bytes | None:
        """Up to ``size`` bytes; b"" only at the end (or without ``wait``); None if gone."""
        self._wanted = min(size, BODY_HIGH_WATER)
        while wait and not (len(self._buffer) >= self._wanted or self.complete or self.gone):
            if self._buffer and self._coalescing is None:
                break  # the wait for more already ran out
            self._ready.clear()
            await self._ready.wait()
        if self.gone:
            return None
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._account.release(len(chunk))
        # Over budget, a pipe still reads once it is empty: each connection keeps
        # making progress, holding at most one socket read beyond the budget.
        if self._paused and (
            not self._buffer
            or (len(self._buffer) < BODY_HIGH_WATER // 2 and not self._account.over)
        ):
            self._paused = False
            self._resume()
        return chunk


_BODY = {"type": "_luminet.body"}


class _RequestQueue(asyncio.Queue):
    """The application's receive queue: each ``get()`` hands out the body that is in."""

    def __init__(self, request: LuminetRequest) -> None:
        super().__init__()
        self._request = request
        self._in_body = False
        self._first = True

    def put_nowait(self, message):
        # daphne read an empty stand-in for the body; a marker takes the message's
        # place in the queue, and get() reads the pipe when it comes up.
        super().put_nowait(_BODY if message.get("type") == "http.request" else message)

    async def get(self):
        if not self._in_body:
            message = await super().get()
            if message is not _BODY:
                return message
            self._in_body = True
        body = self._request.body
        # The first message does not wait for body bytes, so the application can
        # refuse a request (unknown host, missing tunnel) before any are read.
        chunk = await body.read(BODY_HIGH_WATER, wait=not self._first)
        self._first = False
        if chunk is None:
            self._in_body = False
            return {"type": "http.disconnect"}
        more = not body.drained
        if not more:
            self._in_body = False
        return {"type": "http.request", "body": chunk, "more_body": more}


class LuminetRequest(WebRequest):
    """daphne's request with backpressure, streamed uploads and aborts."""

    backpressure: _Backpressure | None = None
    body: _BodyPipe
    _streaming = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Twisted would read a whole form-encoded or multipart POST body into
        # memory to fill request.args (and refuse malformed multipart bodies);
        # daphne never uses args, and the local server must get such bodies as
        # they are. Twisted sets this per instance, so it is set after __init__.
        self._parsePOSTFormSubmission = False

    def gotLength(self, length):
        self.content = _EmptyBody()
        host = (self.requestHeaders.getRawHeaders(b"host") or [b""])[0]
        account = _budget(self.server).account(budget_key(host.decode("latin-1")))
        self.body = _BodyPipe(self._pause_reading, self._resume_reading, account)

    def handleContentChunk(self, data):
        self.body.write(data)

    def start_streaming(self, command: bytes, path: bytes, version: bytes) -> None:
        """Run the application now, with the head only; the body follows as it arrives.

        What ``requestReceived`` does before ``process()``, minus the query parsing
        daphne does not use.
        """
        self._streaming = True
        self.method, self.uri, self.clientproto = command, path, version
        self.path = path.split(b"?", 1)[0]
        self.args: dict[bytes, list[bytes]] = {}
        self.process()

    def requestReceived(self, command, path, version):
        self.body.finish()
        if not self._streaming:
            super().requestReceived(command, path, version)

    @property
    def body_incomplete(self) -> bool:
        return not self.body.complete

    def _pause_reading(self) -> None:
        # Twisted deletes ``channel`` once the request is done.
        channel = getattr(self, "channel", None)
        if channel is not None:
            channel.pause_for_body()

    def _resume_reading(self) -> None:
        channel = getattr(self, "channel", None)
        if channel is not None:
            channel.resume_for_body()

    def process(self):
        # Response heads and bodies are separate small writes: without TCP_NODELAY,
        # Nagle's algorithm holds the body back until the head is acknowledged.
        transport = getattr(self.channel, "transport", None)
        if transport is not None and hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
        result = super().process()
        channel = getattr(self, "channel", None)
        if self.transport is None and transport is not None and channel is not None:
            # Upgraded to a WebSocket: the socket now belongs to that protocol, which
            # uncounts the connection when it closes.
            upgraded = getattr(transport, "protocol", None)
            if isinstance(upgraded, LuminetWebSocketProtocol):
                upgraded.release, channel.release = channel.release, None
                # The transport still reports a full write buffer to the channel.
                channel.upgraded = upgraded
        return result

    def handle_reply(self, message):
        if self.finished or self.channel is None:
            return
        ending = message["type"] == "http.response.body" and not message.get("more_body", False)
        if ending and self.backpressure is not None:
            # Twisted complains about a producer still registered at finish().
            self.unregisterProducer()
            self.backpressure = None
        if message["type"] == "http.response.body" and self.method == b"HEAD":
            # RFC 9110 section 9.3.2: a HEAD response has no content. Twisted drops only
            # the first write; daphne's later ones (Django sends 64 KiB a message) get
            # past that guard onto the connection, where they would be read as the
            # next response.
            message = {**message, "body": b""}
        if message["type"] == "http.response.start" and self.body_incomplete:
            # Answering before the whole body is in (a refusal, or a local server
            # that does not read it): the rest is never parsed as a next request.
            self.channel.persistent = False
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        super().handle_reply(message)
        if message["type"] == "http.response.start" and not self.finished:
            paused = bool(getattr(self.channel, "_waitingForTransport", False))
            self.backpressure = _Backpressure(paused)
            self.registerProducer(self.backpressure, True)

    def connectionLost(self, reason):
        self.body.abort()
        super().connectionLost(reason)

    @property
    def peer_name(self) -> str:
        """The public client's address as ``host:port``, for the log."""
        host, port = (self.client_addr or ("?", "?"))[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def abort(self) -> None:
        """Reset the connection: the client sees an error, not a clean end."""
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.abortConnection()

    def check_timeouts(self):
        if (
            self.server.http_timeout
            and self.duration() > self.server.http_timeout
            and self._response_started
        ):
            logger.warning("application timed out mid-response; aborting %s", self.peer_name)
            self.abort()
            return
        super().check_timeouts()


def _budget(server: Any) -> MemoryBudget:
    return getattr(server, "memory_budget", UNLIMITED)


def _discard(data: bytes) -> None:
    pass


def _peer(channel: HTTPChannel) -> str:
    transport: Any = channel.transport
    peer = transport.getPeer() if transport is not None else None
    return str(getattr(peer, "host", "?"))


class _BoundedChunkedDecoder(_ChunkedTransferDecoder):
    """Twisted's chunked decoder, refusing a chunk size no body could have.

    Twisted reads a chunk-size line of up to 1 KiB of hex digits and then waits for
    that many bytes; a size past 64 bits is an attack or a bug, answered with 400
    at once rather than after the idle timeout.
    """

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        end = self._buffer.find(b"\r\n", 0, 1024)
        if end != -1:
            size = self._buffer[:end].split(b";", 1)[0].strip()
            if len(size.lstrip(b"0")) > MAX_CHUNK_SIZE_DIGITS:
                raise _MalformedChunkedDataError("chunk size too large")
        return super()._dataReceived_CHUNK_LENGTH()


#: Hex digits in the largest chunk size we read (16: 2**64 - 1).
MAX_CHUNK_SIZE_DIGITS = 16


class LuminetHTTPChannel(HTTPChannel):
    """Twisted's HTTP/1.1 channel, starting the application as soon as the head is in.

    Twisted hands a request over only once its whole body has arrived; here the
    application starts with the head and reads the body from ``LuminetRequest.body``
    as the caller sends it. A response that ends before the body does closes the
    connection after a short lingering read (so the caller sees the answer, not a
    reset), and the unread rest is discarded, never parsed as another request.
    """

    _lingering: Any = None
    _body_paused = False
    _saved_timeout: Any = None
    #: Set by the factory: the limits, and how to uncount this connection.
    limits = ConnectionLimits()
    release: Callable[[], None] | None = None
    _head_deadline: Any = None
    _body_check: Any = None
    #: The WebSocket this connection was upgraded to: the transport's pause and
    #: resume signals (its write buffer) still come here, and go on to it.
    upgraded: LuminetWebSocketProtocol | None = None

    def pauseProducing(self):
        if self.upgraded is not None:
            self.upgraded.write_paused()
            return
        super().pauseProducing()

    def resumeProducing(self):
        if self.upgraded is not None:
            self.upgraded.write_resumed()
            return
        super().resumeProducing()

    _body_bytes = 0
    _paused_in_window = False

    def _start_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.callLater(self.limits.head_timeout, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        logger.warning("request head too slow from %s; closing", _peer(self))
        self._refuse(408, "Request Timeout")

    def _start_body_check(self) -> None:
        self._body_bytes = 0
        self._paused_in_window = False
        self._body_check = self.callLater(self.limits.body_rate_window, self._check_body_rate)

    def _check_body_rate(self) -> None:
        self._body_check = None
        request = self.requests[-1] if self.requests else None
        if not (isinstance(request, LuminetRequest) and request.body_incomplete):
            return
        window = self.limits.body_rate_window
        too_slow = self._body_bytes < self.limits.min_body_rate * window
        if too_slow and not (self._paused_in_window or self._body_paused):
            logger.warning(
                "request body slower than %.0f B/s from %s; dropping",
                self.limits.min_body_rate,
                _peer(self),
            )
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self._start_body_check()

    def _stop_timers(self) -> None:
        for name in ("_head_deadline", "_body_check"):
            timer = getattr(self, name)
            if timer is not None and timer.active():
                timer.cancel()
            setattr(self, name, None)

    def dataReceived(self, data):
        # A request head must end its lines with CRLF (RFC 9112 section 2.2); Twisted
        # would wait for one until the idle timeout. In line mode the buffer holds no
        # whole line, so the next LF must follow a CR, here or at the buffer's end;
        # LFs in later lines of the head are caught by lineReceived.
        if self.line_mode and data and not self._handlingRequest:
            self._start_head_deadline()
        if self.line_mode and (lf := data.find(b"\n")) != -1:
            previous = data[lf - 1 : lf] if lf else self._buffer[-1:]
            if previous != b"\r":
                self._refuse(400, "Bad Request")
                return
        super().dataReceived(data)

    def lineLengthExceeded(self, line):
        # RFC 9110 sections 15.5.15 and RFC 6585 section 5: say which part was too long.
        if self._HTTPChannel__first_line:  # type: ignore[attr-defined]
            self._refuse(414, "URI Too Long")
        else:
            self._refuse(431, "Request Header Fields Too Large")

    def lineReceived(self, line):
        if b"\n" in line:  # a bare LF inside the head
            self._refuse(400, "Bad Request")
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse(431, "Request Header Fields Too Large")
            return
        super().lineReceived(line)

    def headerReceived(self, line):
        if self._receivedHeaderCount >= self.maxHeaders:
            self._refuse(431, "Request Header Fields Too Large")
            return False
        return super().headerReceived(line)

    def _maybeChooseTransferDecoder(self, header, data):
        proceed = super()._maybeChooseTransferDecoder(header, data)
        if type(self._transferDecoder) is _ChunkedTransferDecoder:
            self._transferDecoder = _BoundedChunkedDecoder(
                self.requests[-1].handleContentChunk, self._finishRequestBody
            )
        return proceed

    def _refuse(self, status: int, phrase: str) -> None:
        """Answer a request we cannot parse, then close (Twisted's own sends only 400)."""
        self._stop_timers()
        self.dataReceived = _discard  # type: ignore[method-assign]
        transport: Any = self.transport
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            % (status, phrase.encode())
        )
        self.loseConnection()

    def allHeadersReceived(self):
        self._stop_timers()
        super().allHeadersReceived()
        if self.length == 0:
            return  # no body: Twisted's own path, allContentReceived follows at once
        self._start_body_check()
        request = self.requests[-1]
        if request.requestHeaders.hasHeader(b"upgrade"):
            # A WebSocket handshake has no body (RFC 6455 section 4.1: a GET).
            self._respondToBadRequestAndDisconnect()
            return
        request.start_streaming(self._command, self._path, self._version)

    def rawDataReceived(self, data: bytes) -> None:
        if self._lingering is None:
            if not self._handlingRequest:
                self._body_bytes += len(data)
            super().rawDataReceived(data)

    def allContentReceived(self):
        if self._body_check is not None:
            self._stop_timers()
        # After a lingering start the request is gone; the rest of its body is dropped.
        if self._lingering is None:
            super().allContentReceived()

    def pause_for_body(self) -> None:
        self._paused_in_window = True
        if not self._body_paused:
            self._body_paused = True
            # The caller is not idle while we hold it back: no idle timeout meanwhile.
            self._saved_timeout = self.setTimeout(None)
        self._network.pauseProducing()

    def resume_for_body(self) -> None:
        if self._body_paused:
            self._body_paused = False
            self.setTimeout(self._saved_timeout)
        if not self._waitingForTransport:
            self._network.resumeProducing()

    def requestDone(self, request):
        if isinstance(request, LuminetRequest):
            request.body.abort()  # answered: nobody reads what is left of the body
        if not (isinstance(request, LuminetRequest) and request.body_incomplete):
            return super().requestDone(request)
        if request is not self.requests[0]:
            raise TypeError
        del self.requests[0]
        self.persistent = False
        self._linger()
        return None

    def _linger(self) -> None:
        """Half-close, read and drop what the caller still sends, close within a bound.

        Closing with unread bytes in the socket makes the kernel send a reset, which
        can destroy the response before the caller reads it (RFC 9112 section 9.6).
        """
        self.dataReceived = _discard  # type: ignore[method-assign]
        self.setTimeout(None)
        self._network.unregisterProducer()
        self._network.resumeProducing()
        transport: Any = self.transport
        self._lingering = self.callLater(LINGER_SECONDS, transport.abortConnection)
        try:
            transport.loseWriteConnection()
        except (AttributeError, NotImplementedError):  # a transport without half-close
            transport.loseConnection()

    @property
    def _network(self) -> Any:
        """The transport as Twisted's channel pauses and resumes it."""
        return self._networkProducer

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_timers()
        if self.release is not None:
            self.release()
            self.release = None
        if self._lingering is not None and self._lingering.active():
            self._lingering.cancel()
        super().connectionLost(reason)


class LuminetWebSocketProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol, passing codes, reasons and refusals through."""

    close_reason = ""
    _denial_status = 403
    _denial_headers: tuple[tuple[str, str], ...] = ()

    #: Uncounts the connection (moved here from the HTTP channel it upgraded from).
    release: Callable[[], None] | None = None
    #: The transport's pause/resume signal; sends wait while the peer is not reading.
    backpressure: _Backpressure | None = None
    _stalled: Any = None
    #: The message being reassembled, charged to the memory budget.
    _account: Account | None = None
    _message_limit = MAX_WS_MESSAGE

    def write_paused(self) -> None:
        """The peer stopped reading (our writes fill the transport's buffer)."""
        if self.backpressure is None:
            self.backpressure = _Backpressure(paused=True)
        self.backpressure.pauseProducing()
        if self._stalled is None:
            reactor: Any = self.factory.reactor  # autobahn's factories keep theirs
            self._stalled = reactor.callLater(self._stall_timeout(), self._stall_timed_out)

    def write_resumed(self) -> None:
        if self.backpressure is not None:
            self.backpressure.resumeProducing()
        if self._stalled is not None and self._stalled.active():
            self._stalled.cancel()
        self._stalled = None

    def _stall_timeout(self) -> float:
        guard = getattr(getattr(self, "server", None), "connection_guard", None)
        return guard.limits.stall_timeout if guard is not None else ConnectionLimits.stall_timeout

    def _stall_timed_out(self) -> None:
        self._stalled = None
        logger.warning(
            "WebSocket peer %s read nothing for %.0f s; dropping",
            getattr(self, "client_addr", "?"),
            self._stall_timeout(),
        )
        self.dropConnection(abort=True)

    def onMessageFrameBegin(self, length: int) -> None:
        super().onMessageFrameBegin(length)
        if self.failedByMe:
            return
        # Charged as declared, before the bytes arrive: daphne hands a message on
        # only once it is whole, and nothing can pause the peer meanwhile.
        if self._account is None:
            host = str(getattr(self, "http_headers", {}).get("host", ""))
            # A tunnel's public sockets only. Every tunnel client connects to the same
            # host: charging the tunnel endpoint would let anyone's unfinished messages
            # there close every tunnel with 1013.
            tunnel_host = isinstance(classify(host), TunnelHost)
            budget = _budget(self.server) if tunnel_host else UNLIMITED
            self._account = budget.account(budget_key(host))
            # daphne has one size limit for every socket; the tunnel endpoint (and
            # anything else on the main host) never needs more than a protocol message.
            self._message_limit = MAX_WS_MESSAGE if tunnel_host else MAX_TUNNEL_MESSAGE
        if self.message_data_total_length > self._message_limit:
            self._fail_connection(CloseCode.MESSAGE_TOO_BIG, "message too big")
        elif not self._account.charge(length):
            logger.warning("memory budget reached for %s; closing a WebSocket", self._account.key)
            self._fail_connection(CloseCode.TRY_AGAIN_LATER, "server busy")

    def onMessageEnd(self) -> None:
        super().onMessageEnd()
        if self._account is not None:
            self._account.close()  # the message went on to the application

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._account is not None:
            self._account.close()
        if self.release is not None:
            self.release()
            self.release = None
        if self._stalled is not None and self._stalled.active():
            self._stalled.cancel()
        if self.backpressure is not None:
            self.backpressure.stopProducing()  # a waiting send goes on, and is dropped
        super().connectionLost(reason)

    def onClose(self, wasClean, code, reason):
        self.close_reason = reason or ""
        super().onClose(wasClean, code, reason)

    def handle_reply(self, message):
        kind = message.get("type")
        if kind == "websocket.http.response.start":
            self._denial_status = int(message["status"])
            # Framing is ours: autobahn's refusal has no body and ends with the connection.
            self._denial_headers = tuple(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", [])
                if name.lower() not in _DENIAL_FRAMING
            )
        elif kind == "websocket.http.response.body":
            if not message.get("more_body") and hasattr(self, "handshake_deferred"):
                status = self._denial_status
                self.handshake_deferred.errback(ConnectionDeny(code=status, reason=_phrase(status)))
                del self.handshake_deferred
                self.server.protocol_disconnected(self)
        elif kind == "websocket.close" and self.state == self.STATE_OPEN:
            self._close(message.get("code"), message.get("reason") or "")
        elif kind == "websocket.send" and self.state == self.STATE_OPEN:
            if message.get("bytes") is not None:
                self.sendMessage(message["bytes"], True)
            elif message.get("text") is not None:
                self.sendMessage(message["text"].encode("utf-8"), False)
        elif kind == "websocket.send" and self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            # The peer closed first (a tunnel client going away as a request for it
            # arrives): nobody reads this. autobahn would raise Disconnected out of
            # the application, which daphne logs as an error of ours.
            return
        else:
            super().handle_reply(message)

    def failHandshake(self, reason, code=400, responseHeaders=None):
        # autobahn passes only a status on from a ConnectionDeny; the application's
        # refusal headers (a WWW-Authenticate, a Location) go with it here.
        headers = list(responseHeaders or [])
        if code == self._denial_status:
            headers += [*self._denial_headers, ("Content-Length", "0")]
        super().failHandshake(reason, code, headers)

    def sendHttpErrorResponse(self, code, reason, responseHeaders=None):
        # autobahn encodes the head as UTF-8; header values are latin-1 text here.
        response = f"HTTP/1.1 {code} {reason}\r\n"
        for name, value in responseHeaders or []:
            response += f"{name}: {value}\r\n"
        self.sendData((response + "\r\n").encode("latin-1", "replace"))

    def _close(self, code: int | None, reason: str) -> None:
        # RFC 6455 section 7.4.1: 1005, 1006 and 1015 never appear in a close frame.
        if code in (CloseCode.ABNORMAL, CloseCode.TLS_HANDSHAKE):
            self.dropConnection(abort=True)
        elif code is None or code == CloseCode.NO_STATUS:
            self.sendCloseFrame()
        else:
            self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123] or None)


class _SocketQueue(asyncio.Queue):
    """A WebSocket application's receive queue, adding the close reason daphne drops."""

    def __init__(self, protocol: LuminetWebSocketProtocol) -> None:
        super().__init__()
        self._protocol = protocol

    def put_nowait(self, message):
        if message.get("type") == "websocket.disconnect":
            message.setdefault("reason", self._protocol.close_reason)
        super().put_nowait(message)


#: Refusal headers we never pass on: the refusal's framing is ours.
_DENIAL_FRAMING = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"keep-alive"}
)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Refused"


class _Overloaded(Protocol):
    """A connection past the limits: 503 and close."""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        transport.loseConnection()


class LuminetHTTPFactory(HTTPFactory):
    def protocol(self):  # type: ignore[override]
        return _GenericHTTPChannelProtocol(LuminetHTTPChannel())

    def buildProtocol(self, addr):
        guard: ConnectionGuard = self.server.connection_guard
        address = str(getattr(addr, "host", ""))
        if not guard.admit(address):
            logger.warning("connection limit reached for %s; refusing", address)
            overloaded = _Overloaded()
            overloaded.factory = self
            return overloaded
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = LuminetRequest
        channel = protocol._channel
        channel.limits = guard.limits
        channel.release = functools.partial(guard.closed, address)
        return protocol


class LuminetServer(Server):
    """daphne's Server using LuminetRequest, waiting on backpressure in ``send()``."""

    def __init__(
        self,
        *args,
        limits: ConnectionLimits | None = None,
        budget: BudgetLimits | None = None,
        stats_interval: float = 0.0,
        on_listening: Callable[[list[tuple[str, int]]], None] | None = None,
        **kwargs,
    ) -> None:
        """``stats_interval``: seconds between two ``stats:`` log lines; 0 for none.
        ``on_listening``: called with the addresses once every endpoint listens."""
        super().__init__(*args, **kwargs)
        self.connection_guard = ConnectionGuard(limits or ConnectionLimits())
        self.memory_budget = MemoryBudget(budget)
        self.stats_interval = stats_interval
        self.on_listening = on_listening

    def listen_success(self, port):
        # Called by Twisted once the socket listens: connections are accepted from here on.
        super().listen_success(port)
        if self.on_listening is not None and len(self.listening_addresses) == len(self.endpoints):
            self.on_listening(list(self.listening_addresses))

    def kill_all_applications(self):
        # Run by Twisted before shutdown (SIGTERM): drain first (tunnels.drain), and
        # only then end every application. Twisted waits for the Deferred returned.
        seconds = settings.LUMINET_DRAIN_SECONDS
        if not seconds or not settings.REDIS_URL:  # no other process to move to
            return super().kill_all_applications()
        loop = reactor._asyncioEventloop  # type: ignore[attr-defined]
        drained = Deferred.fromFuture(loop.create_task(drain.drain(seconds)))
        drained.addErrback(lambda failure: logger.error("drain failed: %s", failure.value))
        drained.addCallback(lambda _: super(LuminetServer, self).kill_all_applications())
        return drained

    def run(self):
        if self.stats_interval:
            self._stats_later()
        try:
            super().run()
        finally:
            # The reactor stopped (SIGTERM, SIGINT): every application has ended, so
            # the usage counted in memory is complete; written here, on no event loop.
            usage.flush_at_exit()

    def _stats_later(self) -> None:
        clock: Any = reactor  # Twisted's stubs type the reactor's methods unbound
        clock.callLater(self.stats_interval, self.log_stats)

    def log_stats(self) -> None:
        """Log what a leak would grow (the soak reads this line), and come again."""
        logger.info(
            "stats: tasks=%d connections=%d budget_held=%d",
            len(asyncio.all_tasks()),
            len(self.connections),
            self.memory_budget.total,
        )
        self._stats_later()

    @property
    def http_factory(self):
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory):
        # Server.run() builds daphne's factory; ours replaces it before it listens.
        self._http_factory = LuminetHTTPFactory(self) if type(factory) is HTTPFactory else factory

    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: WebSocketFactory):
        factory.protocol = LuminetWebSocketProtocol
        # failByDrop off: a peer that broke the rules (a message past the size limit)
        # gets a close frame with the reason code before the connection ends, not a
        # bare drop that resets it mid-send.
        factory.setProtocolOptions(closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT, failByDrop=False)
        self._ws_factory = factory

    def create_application(self, protocol, scope):
        # daphne's create_application, with our receive queue, send and guard.
        assert "application_instance" not in self.connections[protocol]
        is_http = isinstance(protocol, LuminetRequest)
        if is_http:
            queue: asyncio.Queue = _RequestQueue(protocol)
        elif isinstance(protocol, LuminetWebSocketProtocol):
            queue = _SocketQueue(protocol)
        else:
            queue = asyncio.Queue()
        scope.setdefault("asgi", {"version": "3.0"})
        scope["luminet.budget"] = self.memory_budget
        instance = self.application(scope=scope, receive=queue.get, send=self._sender(protocol))
        if protocol not in self.connections:
            instance.close()  # never scheduled: avoid "coroutine was never awaited"
            return None
        if is_http:
            instance = _abort_on_late_failure(instance, protocol)
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(instance)
        return queue

    def _sender(self, protocol):
        async def send(message):
            await self.handle_reply(protocol, message)
            backpressure = getattr(protocol, "backpressure", None)
            if backpressure is not None and (
                message.get("more_body") or message.get("type") == "websocket.send"
            ):
                await backpressure.wait()

        return send


async def _abort_on_late_failure(application, request: LuminetRequest) -> None:
    try:
        await application
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not request._response_started:
            raise  # daphne answers with a 500 page
        # Too late for an error page: reset the connection so the client cannot
        # mistake what it got for the whole response. Swallowed, so daphne's
        # application_checker does not try (and fail) to send a 500 after it.
        if isinstance(exc, TunnelError):  # a tunnel or local server failing: routine
            logger.info("response to %s cut off mid-way: %s", request.peer_name, exc)
        else:
            logger.exception("application failed mid-response; aborting %s", request.peer_name)
        request.abort()
