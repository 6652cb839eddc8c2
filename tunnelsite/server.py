"""daphne, with three defects fixed where they live. ``manage.py serve`` runs this.

Stock daphne 4.2 (measured in issue 3):

1. No backpressure: an application's ``send()`` never waits, so a fast producer
   and a slow reader pile the whole response up in memory (a 500 MB response to a
   10 MB/s reader peaked at 1 GB). Here the request registers a push producer with
   Twisted; the transport pauses and resumes it around its write buffer, and
   ``send()`` of a body chunk waits while it is paused.
2. Uploads: once a body is complete daphne pushes all of it into the
   application's queue at once (a 500 MB POST held 590 MB). Here the application
   gets one chunk per ``receive()``, read from Twisted's spooled body file.
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

This leans on daphne internals (``WebRequest._response_started``,
``WebRequest.content``, ``Server.http_factory``), so daphne is pinned to 4.2.x
and ``tests/server/`` holds a regression test for each defect: an upgrade that
breaks one of these hooks fails there first.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus

from autobahn.twisted.websocket import ConnectionDeny
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from tunnels.relay import TunnelError

logger = logging.getLogger(__name__)

#: Bytes per ``http.request`` message handed to the application.
UPLOAD_CHUNK = 64 * 1024


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
    """Stands in for the body file while daphne's own loop would read it all."""

    closed = False

    def read(self, size: int = -1) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def close(self) -> None:
        pass


_BODY = {"type": "_luminet.body"}


class _RequestQueue(asyncio.Queue):
    """The application's receive queue, handing out the body one chunk per ``get()``."""

    def __init__(self, request: LuminetRequest) -> None:
        super().__init__()
        self._request = request
        self._body_file = None  # set while the body is being handed out
        self._body_offset = 0

    def put_nowait(self, message):
        # daphne read an empty stand-in for the body; a marker takes the message's
        # place in the queue, and get() reads the real file when it comes up.
        super().put_nowait(_BODY if message.get("type") == "http.request" else message)

    async def get(self):
        if self._body_file is None:
            message = await super().get()
            if message is not _BODY:
                return message
            self._body_file = self._request.real_content
            if self._body_file is None:
                return {"type": "http.request", "body": b"", "more_body": False}
        try:
            self._body_file.seek(self._body_offset)
            chunk = self._body_file.read(UPLOAD_CHUNK)
        except (OSError, ValueError):  # closed under us: the client went away
            self._body_file = None
            return {"type": "http.disconnect"}
        self._body_offset += len(chunk)
        more = len(chunk) == UPLOAD_CHUNK
        if not more:
            self._body_file = None
        return {"type": "http.request", "body": chunk, "more_body": more}


class LuminetRequest(WebRequest):
    """daphne's request with backpressure, lazy uploads and aborts."""

    backpressure: _Backpressure | None = None
    real_content = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Twisted would read a whole form-encoded or multipart POST body into
        # memory to fill request.args (and refuse malformed multipart bodies);
        # daphne never uses args, and the local server must get such bodies as
        # they are. Twisted sets this per instance, so it is set after __init__.
        self._parsePOSTFormSubmission = False

    def process(self):
        # Hide the body from daphne's read-everything loop; _RequestQueue reads it.
        self.real_content, self.content = self.content, _EmptyBody()
        # Response heads and bodies are separate small writes: without TCP_NODELAY,
        # Nagle's algorithm holds the body back until the head is acknowledged.
        transport = getattr(self.channel, "transport", None)
        if transport is not None and hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
        return super().process()

    def handle_reply(self, message):
        if self.finished or self.channel is None:
            return
        ending = message["type"] == "http.response.body" and not message.get("more_body", False)
        if ending and self.backpressure is not None:
            # Twisted complains about a producer still registered at finish().
            self.unregisterProducer()
            self.backpressure = None
        super().handle_reply(message)
        if message["type"] == "http.response.start" and not self.finished:
            paused = bool(getattr(self.channel, "_waitingForTransport", False))
            self.backpressure = _Backpressure(paused)
            self.registerProducer(self.backpressure, True)

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
            logger.warning("application timed out mid-response; aborting %s", self.client_addr)
            self.abort()
            return
        super().check_timeouts()

    def _cleanup(self):
        if self.real_content is not None:
            self.real_content.close()
        super()._cleanup()


class LuminetWebSocketProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol, passing codes, reasons and refusals through."""

    close_reason = ""
    _denial_status = 403

    def onClose(self, wasClean, code, reason):
        self.close_reason = reason or ""
        super().onClose(wasClean, code, reason)

    def handle_reply(self, message):
        kind = message.get("type")
        if kind == "websocket.http.response.start":
            self._denial_status = int(message["status"])
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
        else:
            super().handle_reply(message)

    def _close(self, code: int | None, reason: str) -> None:
        # RFC 6455 section 7.4.1: 1005, 1006 and 1015 never appear in a close frame.
        if code in (1006, 1015):
            self.dropConnection(abort=True)
        elif code is None or code == 1005:
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


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Refused"


class LuminetHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = LuminetRequest
        return protocol


class LuminetServer(Server):
    """daphne's Server using LuminetRequest, waiting on backpressure in ``send()``."""

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
            if backpressure is not None and message.get("more_body"):
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
            logger.warning("response failed mid-way (%s); aborting %s", exc, request.client_addr)
        else:
            logger.exception("application failed mid-response; aborting %s", request.client_addr)
        request.abort()
