"""The exchange runner with a scripted local server and wire: no network, no server.

Each test checks what goes on the wire (the window messages, the response, the
error) and that the stream's record ends exactly once, whatever happens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import websocket

from client import protocol
from client.console import status_text
from client.errors import AuthFailed, ConnectionLost, NameRefused
from client.events import Events, Failure
from client.exchanges import ExchangeRunner, HttpStream
from client.forward import LocalError, LocalResponse
from client.keeper import authenticate
from client.protocol import CREDIT_BATCH, INITIAL_REQUEST_CHUNKS, WINDOW_CHUNKS, ProtocolError

from .test_events import Raising, Recorder, Tapping, ends

#: Seconds any wait in these tests may take; they take milliseconds.
WAIT = 5.0


class Wire:
    """The tunnel's sending side: remembers messages; loses the tunnel when told to."""

    def __init__(self, lose: Callable[[protocol.Message], bool] = lambda m: False) -> None:
        self.sent: list[protocol.Message] = []
        self._lose = lose
        self._cond = threading.Condition()

    def send(self, message: protocol.ControlMessage) -> None:
        self._record(message)

    def send_data(self, message: protocol.BinaryMessage) -> None:
        self._record(message)

    def _record(self, message: protocol.Message) -> None:
        if self._lose(message):
            raise ConnectionLost("gone")
        with self._cond:
            self.sent.append(message)
            self._cond.notify_all()

    def data(self) -> list[protocol.Data]:
        with self._cond:
            return [m for m in self.sent if isinstance(m, protocol.Data)]

    def windows(self) -> list[protocol.Window]:
        return [m for m in self.sent if isinstance(m, protocol.Window)]

    def errors(self) -> list[protocol.StreamError]:
        return [m for m in self.sent if isinstance(m, protocol.StreamError)]

    def wait_for_data(self, count: int) -> None:
        with self._cond:
            reached = self._cond.wait_for(
                lambda: sum(isinstance(m, protocol.Data) for m in self.sent) >= count, WAIT
            )
        assert reached, f"fewer than {count} DATA frames in {WAIT} s"


class Local:
    """One exchange with the local server, scripted: its response, where it fails."""

    def __init__(
        self,
        body: list[bytes] | None = None,
        status: int = 200,
        fail: str | None = None,
        waiting: bool = False,
    ) -> None:
        self.body = [b"ok"] if body is None else body
        self.status = status
        self.fail = fail
        self.waiting = waiting
        self.request: protocol.Request | None = None
        self.received: list[bytes] = []
        self.aborted = threading.Event()
        self.thinking = threading.Event()
        self.finished = False

    def connect(self, request: protocol.Request) -> Local:
        self.request = request
        return self

    def send_request(self, body_chunks: Iterator[bytes], on_chunk_sent: Callable[[], None]) -> None:
        if self.fail == "connect":
            raise LocalError("connection refused by the local server")
        assert self.request is not None
        if self.request.body:
            for chunk in body_chunks:
                self.received.append(chunk)
                on_chunk_sent()

    def receive_response(self) -> LocalResponse:
        if self.fail == "bug":
            raise RuntimeError("a bug")
        if self.fail == "hang":  # until the stream is cancelled and the connection dropped
            self.thinking.set()
            assert self.aborted.wait(WAIT)
            raise LocalError("local server closed the connection")
        return LocalResponse(self.status, [("content-type", "text/plain")], bool(self.body))

    def body_waiting(self) -> bool:
        return self.waiting

    def body_chunks(self) -> Iterator[tuple[bytes, bool]]:
        for number, chunk in enumerate(self.body, 1):
            if self.fail == "body" and number == 2:
                raise LocalError("local server closed the connection mid-response")
            yield chunk, number == len(self.body)

    def finish(self) -> None:
        self.finished = True

    def abort(self) -> None:
        self.aborted.set()


def request(body: bool = False, method: str = "GET") -> protocol.Request:
    return protocol.Request(stream=1, method=method, path="/x", body=body)


def serve(
    local: Local, stream: HttpStream, wire: Wire | None = None, observers: list | None = None
) -> tuple[Wire, Recorder]:
    wire = wire or Wire()
    recorder = Recorder()
    events = Events([recorder, *(observers or [])])
    events.exchange_started(stream.record)
    ExchangeRunner(wire, local.connect, events).serve(stream)
    return wire, recorder


def in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def feed(stream: HttpStream, chunks: list[bytes]) -> None:
    """Queue the request body as the server sends it once the stream has started."""
    stream.started()  # the worker's Window opening the whole window, sent in serve()
    for number, chunk in enumerate(chunks, 1):
        stream.chunk_received(chunk, end=number == len(chunks))


def test_a_body_waiting_for_a_worker_holds_one_chunk_and_starting_opens_the_window() -> None:
    """Protocol 2: before a worker starts the stream the server may send one chunk; the
    worker's first message widens the window to WINDOW_CHUNKS."""
    stream = HttpStream(request(body=True, method="POST"))
    stream.chunk_received(b"first", end=False)
    with pytest.raises(ProtocolError):
        stream.chunk_received(b"second", end=False)
    fresh = HttpStream(request(body=True, method="POST"))
    fresh.chunk_received(b"x", end=True)
    wire, _ = serve(Local(), fresh)
    assert wire.sent[0] == protocol.Window(fresh.id, WINDOW_CHUNKS - INITIAL_REQUEST_CHUNKS)


def test_a_complete_exchange_finishes_with_its_byte_counts() -> None:
    local = Local(body=[b"hello", b" world"])
    stream = HttpStream(request(body=True, method="POST"))
    feed(stream, [b"abc", b"defg"])
    wire, recorder = serve(local, stream)
    assert local.received == [b"abc", b"defg"]
    assert [type(m) for m in wire.sent] == [protocol.Response, protocol.Data, protocol.Data]
    assert [(d.payload, d.end) for d in wire.data()] == [(b"hello", False), (b" world", True)]
    record = stream.record
    assert ends(recorder) == ["exchange_finished"]
    assert (record.outcome, record.status, record.bytes_in, record.bytes_out) == (
        "finished",
        200,
        7,
        11,
    )
    assert recorder.hooks() == ["exchange_started", "response_started", "exchange_finished"]
    assert local.finished


def test_request_chunks_are_credited_in_batches_and_not_after_the_end() -> None:
    """CREDIT_BATCH at a time as the local server takes them; nothing for the last ones."""
    chunks = [bytes([n]) for n in range(2 * CREDIT_BATCH + 3)]
    stream = HttpStream(request(body=True, method="PUT"))
    feed(stream, chunks)
    wire, _ = serve(Local(), stream)
    assert wire.windows() == [protocol.Window(1, CREDIT_BATCH)] * 2


def test_a_body_ending_on_a_batch_sends_no_credit_for_its_end() -> None:
    stream = HttpStream(request(body=True, method="PUT"))
    feed(stream, [b"x"] * (2 * CREDIT_BATCH))
    wire, _ = serve(Local(), stream)
    assert wire.windows() == [protocol.Window(1, CREDIT_BATCH)]


def test_a_request_chunk_beyond_the_window_is_a_protocol_error() -> None:
    stream = HttpStream(request(body=True, method="PUT"))
    stream.started()
    for _ in range(WINDOW_CHUNKS):
        stream.chunk_received(b"x", end=False)
    with pytest.raises(ProtocolError, match="stream 1"):
        stream.chunk_received(b"x", end=False)


def test_response_chunks_wait_for_credit() -> None:
    """A window of chunks goes out; the rest only as the server hands credit back."""
    local = Local(body=[b"c"] * (WINDOW_CHUNKS + CREDIT_BATCH))
    stream = HttpStream(request())
    wire = Wire()
    worker = in_thread(lambda: serve(local, stream, wire))
    wire.wait_for_data(WINDOW_CHUNKS)
    assert len(wire.data()) == WINDOW_CHUNKS  # and no more without credit
    stream.credit(CREDIT_BATCH)
    worker.join(WAIT)
    assert not worker.is_alive()
    assert len(wire.data()) == WINDOW_CHUNKS + CREDIT_BATCH
    assert stream.record.outcome == "finished"


def test_data_follows_when_the_body_is_already_in() -> None:
    wire, _ = serve(Local(waiting=True), HttpStream(request()))
    assert wire.sent[0] == protocol.Response(
        1, 200, [("content-type", "text/plain")], body=True, data_follows=True
    )


def test_cancel_while_waiting_for_credit_fails_the_exchange() -> None:
    """The worker wakes, drops the local connection, sends no error; the record says cancelled."""
    local = Local(body=[b"c"] * (WINDOW_CHUNKS + 1))
    stream = HttpStream(request())
    wire = Wire()
    results: list[tuple[Wire, Recorder]] = []
    worker = in_thread(lambda: results.append(serve(local, stream, wire)))
    wire.wait_for_data(WINDOW_CHUNKS)
    stream.cancel()
    worker.join(WAIT)
    assert not worker.is_alive()
    (_, recorder), record = results[0], stream.record
    assert ends(recorder) == ["exchange_failed"]
    assert (record.outcome, record.failure) == ("failed", Failure.CANCELLED)
    assert local.aborted.is_set() and local.finished
    assert wire.errors() == []
    assert status_text(record) == "200 cancelled"


def test_cancel_while_the_local_server_thinks_fails_as_cancelled() -> None:
    """The dropped local connection's error is the cancel's doing, not a local error."""
    local = Local(fail="hang")
    stream = HttpStream(request())
    results: list[tuple[Wire, Recorder]] = []
    worker = in_thread(lambda: results.append(serve(local, stream)))
    assert local.thinking.wait(WAIT)
    stream.cancel()
    worker.join(WAIT)
    wire, recorder = results[0]
    assert ends(recorder) == ["exchange_failed"]
    assert stream.record.failure is Failure.CANCELLED
    assert wire.errors() == []


def test_a_stream_cancelled_before_its_worker_started_never_reaches_the_local_server() -> None:
    local = Local()
    stream = HttpStream(request())
    stream.cancel()
    wire, recorder = serve(local, stream)
    assert wire.sent == [] and local.received == []
    assert ends(recorder) == ["exchange_failed"]
    assert stream.record.failure is Failure.CANCELLED


def test_a_stream_dropped_with_the_tunnel_before_its_worker_started_fails() -> None:
    recorder = Recorder()
    events = Events([recorder])
    stream = HttpStream(request())
    events.exchange_started(stream.record)
    stream.cancel(Failure.TUNNEL_LOST)
    ExchangeRunner(Wire(), Local().connect, events).never_ran(stream)
    assert ends(recorder) == ["exchange_failed"]
    assert stream.record.failure is Failure.TUNNEL_LOST
    assert status_text(stream.record) == "tunnel lost"


def test_local_error_before_the_head_is_a_502() -> None:
    """The server gets an error message; the console shows 502."""
    wire, recorder = serve(Local(fail="connect"), HttpStream(request()))
    assert wire.sent == [protocol.StreamError(1, "connection refused by the local server")]
    assert ends(recorder) == ["exchange_failed"]
    assert recorder.calls[-1][2] == "connection refused by the local server"


def test_local_error_after_the_head_aborts_the_response() -> None:
    stream = HttpStream(request())
    wire, recorder = serve(Local(body=[b"a", b"b", b"c"], fail="body"), stream)
    assert isinstance(wire.sent[0], protocol.Response)
    assert wire.errors() == [
        protocol.StreamError(1, "local server closed the connection mid-response")
    ]
    assert ends(recorder) == ["exchange_failed"]
    assert (stream.record.failure, stream.record.bytes_out) == (Failure.LOCAL_ERROR, 1)
    assert status_text(stream.record) == (
        "200 aborted (local server closed the connection mid-response)"
    )


def test_a_lost_tunnel_fails_the_exchange() -> None:
    wire = Wire(lose=lambda m: isinstance(m, protocol.Response))
    stream = HttpStream(request())
    local = Local()
    _, recorder = serve(local, stream, wire)
    assert ends(recorder) == ["exchange_failed"]
    assert (stream.record.failure, stream.record.status) == (Failure.TUNNEL_LOST, None)
    assert local.finished


def test_a_bug_fails_the_exchange_and_tells_the_server() -> None:
    stream = HttpStream(request())
    local = Local(fail="bug")
    wire, recorder = serve(local, stream)
    assert wire.sent == [protocol.StreamError(1, "client error")]
    assert ends(recorder) == ["exchange_failed"]
    assert stream.record.failure is Failure.CLIENT_ERROR
    assert local.finished


def test_a_raising_observer_changes_nothing_on_the_wire() -> None:
    chunks = [b"x"] * (CREDIT_BATCH + 1)
    plain, failing = HttpStream(request(body=True)), HttpStream(request(body=True))
    feed(plain, chunks)
    feed(failing, chunks)
    expected, _ = serve(Local(body=[b"a", b"b"]), plain)
    wire, recorder = serve(Local(body=[b"a", b"b"]), failing, observers=[Raising()])
    assert wire.sent == expected.sent
    assert ends(recorder) == ["exchange_finished"]


def test_taps_see_the_bodies_in_order() -> None:
    """A tapping observer gets each request chunk the local server took and each response chunk."""
    tapping = Tapping()
    stream = HttpStream(request(body=True, method="POST"))
    feed(stream, [b"up-1", b"up-2"])
    serve(Local(body=[b"down-1", b"down-2"]), stream, observers=[tapping])
    assert [call for call in tapping.calls if call[0].endswith("_body")] == [
        ("request_body", b"up-1"),
        ("request_body", b"up-2"),
        ("response_body", b"down-1"),
        ("response_body", b"down-2"),
    ]


class _ScriptedSocket:
    """Stands in for the tunnel WebSocket during authentication: one reply, then nothing."""

    def __init__(self, reply: protocol.ControlMessage) -> None:
        self.sent: list[str] = []
        self._reply = protocol.encode(reply)

    def send(self, text: str) -> None:
        self.sent.append(text)

    def ping(self, payload: bytes) -> None:
        pass  # no pong comes back: the round trip stays unknown

    def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]:
        return websocket.ABNF.OPCODE_TEXT, self._reply.encode()


def test_a_busy_server_is_retried_and_a_refused_token_is_not() -> None:
    """auth_error with retry (Redis unreachable) means reconnect; without it, give up."""
    busy = _ScriptedSocket(protocol.AuthError("server busy, try again", retry=True))
    with pytest.raises(ConnectionLost):
        authenticate(busy, "lmn_token", None)  # type: ignore[arg-type]
    refused = _ScriptedSocket(protocol.AuthError("invalid token"))
    with pytest.raises(AuthFailed):
        authenticate(refused, "lmn_token", None)  # type: ignore[arg-type]


def test_a_refused_subdomain_says_why_and_what_to_do() -> None:
    """auth_error with a subdomain code is a NameRefused naming the cause and the fix."""
    taken = _ScriptedSocket(
        protocol.AuthError("'my-app' is in use by another token", code="subdomain-taken")
    )
    with pytest.raises(NameRefused) as refused:
        authenticate(taken, "lmn_token", "my-app", required=True)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "subdomain refused: 'my-app' is in use by another token; "
        "choose another name with --subdomain"
    )
    assert '"required":true' in taken.sent[0]
