"""Public HTTP requests, each run on a worker thread against the local server.

The tunnel's reader thread makes an :class:`HttpStream` for each ``request`` and
feeds it what arrives for it (body chunks, credit, cancel); a worker runs
:meth:`ExchangeRunner.serve` on it: the local exchange, the response sent back,
and the stream's record reported to ``Events`` from start to its one end.

Flow control mirrors the server's (``client.flow``): a worker sends at most
``WINDOW_CHUNKS`` response chunks ahead of the server's ``window`` credit, and
credits request chunks back, ``CREDIT_BATCH`` at a time, once the local server
has taken them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from . import protocol
from .errors import ConnectionLost
from .events import Events, ExchangeRecord, Failure
from .flow import ReceiveWindow, SendWindow
from .forward import LocalError, LocalResponse
from .protocol import ProtocolError

logger = logging.getLogger(__name__)


class Wire(Protocol):
    """The tunnel's sending side; both raise ConnectionLost once it is gone."""

    def send(self, message: protocol.ControlMessage) -> None: ...

    def send_data(self, message: protocol.BinaryMessage) -> None: ...


class LocalExchange(Protocol):
    """One request/response with the local server (``forward.Exchange``)."""

    def send_request(
        self, body_chunks: Iterator[bytes], on_chunk_sent: Callable[[], None]
    ) -> None: ...

    def receive_response(self) -> LocalResponse: ...

    def body_waiting(self) -> bool: ...

    def body_chunks(self) -> Iterator[tuple[bytes, bool]]: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class StreamCancelled(Exception):
    """The stream was cancelled while its worker waited for the server."""


class HttpStream:
    """One request's state, shared by the reader thread and its worker.

    The window rules are ``client.flow``'s; this class only guards them with one
    Condition, which also wakes a worker waiting for credit when the stream ends.
    """

    def __init__(self, request: protocol.Request) -> None:
        self.request = request
        self.id = request.stream
        self.record = ExchangeRecord.from_request(request)
        self.body: queue.Queue[tuple[bytes, bool] | None] = queue.Queue()
        self.body_done = False  # the last request chunk has reached the local server
        #: Why the stream was cancelled (the first reason given), or None.
        self.cancelled: Failure | None = None
        #: What the server said when it gave up (a timeout), for the record.
        self.cancel_reason = ""
        self.exchange: LocalExchange | None = None
        self._flow = threading.Condition(threading.Lock())
        # Request chunks from the server: a first window of one chunk, widened when a
        # worker starts the stream (client.protocol.INITIAL_REQUEST_CHUNKS).
        self._receive = ReceiveWindow(size=protocol.INITIAL_REQUEST_CHUNKS)
        self._send = SendWindow()  # response chunks to the server

    # -- from the reader thread ------------------------------------------------

    def cancel(self, failure: Failure = Failure.CANCELLED, reason: str = "") -> None:
        """Stop the stream: the public side went away (or the server gave up, saying
        ``reason``), or the tunnel did."""
        with self._flow:
            if self.cancelled is None:
                self.cancelled, self.cancel_reason = failure, reason
            self._flow.notify_all()
        self.body.put(None)
        exchange = self.exchange
        if exchange is not None:
            exchange.abort()

    def chunk_received(self, chunk: bytes, end: bool) -> None:
        """Queue a request chunk from the server, holding it to the window."""
        with self._flow:
            try:
                self._receive.received()
            except ProtocolError as exc:
                raise ProtocolError(f"stream {self.id}: {exc}") from exc
        self.body.put((chunk, end))

    def credit(self, chunks: int) -> None:
        """Take the server's credit for response chunks."""
        with self._flow:
            self._send.granted(chunks)
            self._flow.notify()

    # -- from the worker -------------------------------------------------------

    def request_chunks(self) -> Iterator[bytes]:
        while True:
            item = self.body.get()
            if item is None or self.cancelled is not None:
                raise StreamCancelled
            chunk, end = item
            self.body_done = end
            yield chunk
            if end:
                return

    def started(self) -> int:
        """A worker took the stream up: the credit that opens the whole window."""
        with self._flow:
            return self._receive.widen(protocol.WINDOW_CHUNKS)

    def chunk_sent(self) -> int:
        """Count a chunk as taken by the local server; return the credit to send back.

        Nothing once the body is complete: the server needs no credit for its end.
        """
        with self._flow:
            if self.body_done:
                return 0
            return self._receive.consumed()

    def wait_credit(self) -> None:
        """Wait until one more response chunk may be sent, and count it as sent."""
        with self._flow:
            while not self._send.open and self.cancelled is None:
                self._flow.wait()
            if self.cancelled is not None:
                raise StreamCancelled
            self._send.sent()


class ExchangeRunner:
    """Serves each stream against the local server and reports it to ``events``."""

    def __init__(
        self,
        wire: Wire,
        connect: Callable[[protocol.Request], LocalExchange],
        events: Events,
    ) -> None:
        self._wire = wire
        self._connect = connect
        self._events = events

    def serve(self, stream: HttpStream) -> None:
        """Run one stream to its end; its record ends exactly once, whatever happens."""
        failure: Failure | None = Failure.CLIENT_ERROR
        reason = ""
        exchange: LocalExchange | None = None
        try:
            exchange = stream.exchange = self._connect(stream.request)
            if stream.cancelled is not None:  # while it waited for a worker
                raise StreamCancelled
            self._run(stream, exchange)
            failure = None
        except StreamCancelled:
            failure, reason = stream.cancelled or Failure.CANCELLED, stream.cancel_reason
        except (LocalError, ProtocolError) as exc:
            if stream.cancelled is not None:  # the abort made the local side fail
                failure, reason = stream.cancelled, stream.cancel_reason
            else:
                failure, reason = Failure.LOCAL_ERROR, str(exc)
                refused = isinstance(exc, LocalError) and exc.refused
                error = protocol.StreamError(stream=stream.id, message=reason, refused=refused)
                self._send_quietly(error)
        except ConnectionLost:
            failure = Failure.TUNNEL_LOST
        except Exception:
            logger.exception("bug while serving stream %d", stream.id)
            self._send_quietly(protocol.StreamError(stream=stream.id, message="client error"))
        finally:
            try:
                if exchange is not None:
                    if stream.cancelled is not None:
                        exchange.abort()
                    exchange.finish()
            finally:
                if failure is None:
                    self._events.exchange_finished(stream.record)
                else:
                    self._events.exchange_failed(stream.record, failure, reason)

    def never_ran(self, stream: HttpStream) -> None:
        """End the record of a stream whose worker never started (the tunnel went away)."""
        self._events.exchange_failed(
            stream.record, stream.cancelled or Failure.TUNNEL_LOST, stream.cancel_reason
        )

    def _run(self, stream: HttpStream, exchange: LocalExchange) -> None:
        record, events = stream.record, self._events
        if stream.request.body and (credit := stream.started()):
            self._wire.send(protocol.Window(stream=stream.id, chunks=credit))
        exchange.send_request(self._request_body(stream), lambda: self._credit_back(stream))
        response = exchange.receive_response()
        headers = protocol.validate_headers(response.headers)
        self._wire.send(
            protocol.Response(
                stream=stream.id,
                status=response.status,
                headers=headers,
                body=response.body,
                # The server may then pass head and first chunk on together.
                data_follows=response.body and exchange.body_waiting(),
            )
        )
        events.response_started(record, response.status, headers)
        if not response.body:
            return
        for chunk, last in exchange.body_chunks():
            stream.wait_credit()
            self._wire.send_data(protocol.Data(stream.id, chunk, end=last))
            record.bytes_out += len(chunk)
            if events.tapping:
                events.response_body(record, chunk)

    def _request_body(self, stream: HttpStream) -> Iterator[bytes]:
        record, events = stream.record, self._events
        for chunk in stream.request_chunks():
            yield chunk
            # Resumed for the next chunk: the local server has taken this one.
            record.bytes_in += len(chunk)
            if events.tapping:
                events.request_body(record, chunk)

    def _credit_back(self, stream: HttpStream) -> None:
        credit = stream.chunk_sent()
        if credit:
            self._wire.send(protocol.Window(stream=stream.id, chunks=credit))

    def _send_quietly(self, message: protocol.ControlMessage) -> None:
        with contextlib.suppress(ConnectionLost):
            self._wire.send(message)
