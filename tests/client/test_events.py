"""Exchange records and observers: times, exactly one end, isolation from failing observers."""

from __future__ import annotations

import logging
import threading

import pytest

from client import protocol
from client.events import Events, ExchangeRecord, Failure, Observer, SocketRecord


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder(Observer):
    """Remembers every hook called, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self._lock = threading.Lock()

    def _note(self, *call: object) -> None:
        with self._lock:
            self.calls.append(call)

    def hooks(self) -> list[object]:
        return [call[0] for call in self.calls]

    def tunnel_active(self, url: str, subdomain: str, local_origin: str) -> None:
        self._note("tunnel_active", url, subdomain, local_origin)

    def exchange_started(self, record: ExchangeRecord) -> None:
        self._note("exchange_started", record)

    def response_started(self, record: ExchangeRecord) -> None:
        self._note("response_started", record)

    def exchange_finished(self, record: ExchangeRecord) -> None:
        self._note("exchange_finished", record)

    def exchange_failed(self, record: ExchangeRecord, reason: str) -> None:
        self._note("exchange_failed", record, reason)

    def request_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        self._note("request_body", chunk)

    def response_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        self._note("response_body", chunk)

    def websocket_opened(self, record: SocketRecord) -> None:
        self._note("websocket_opened", record)

    def websocket_accepted(self, record: SocketRecord) -> None:
        self._note("websocket_accepted", record)

    def websocket_closed(self, record: SocketRecord) -> None:
        self._note("websocket_closed", record)

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        self._note("websocket_failed", record, reason)

    def websocket_message(
        self, record: SocketRecord, data: bytes, text: bool, from_public: bool
    ) -> None:
        self._note("websocket_message", data, text, from_public)


class Tapping(Recorder):
    taps_bodies = True


class Raising(Observer):
    """Fails in every hook it has."""

    taps_bodies = True

    def tunnel_active(self, url: str, subdomain: str, local_origin: str) -> None:
        raise RuntimeError("observer bug")

    def exchange_started(self, record: ExchangeRecord) -> None:
        raise RuntimeError("observer bug")

    def response_started(self, record: ExchangeRecord) -> None:
        raise RuntimeError("observer bug")

    def exchange_finished(self, record: ExchangeRecord) -> None:
        raise RuntimeError("observer bug")

    def exchange_failed(self, record: ExchangeRecord, reason: str) -> None:
        raise RuntimeError("observer bug")

    def request_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        raise RuntimeError("observer bug")


def record(stream: int = 1) -> ExchangeRecord:
    request = protocol.Request(
        stream=stream,
        method="POST",
        path="/hook",
        headers=[("authorization", "Bearer secret-value"), ("cookie", "session=secret-cookie")],
        body=True,
    )
    return ExchangeRecord.from_request(request)


def ends(recorder: Recorder) -> list[object]:
    return [hook for hook in recorder.hooks() if hook in ("exchange_finished", "exchange_failed")]


def test_times_come_from_the_clock() -> None:
    """Start, response head and end are stamped by the clock; ms is their difference."""
    clock = Clock()
    events = Events([], clock=clock, wall_clock=lambda: 1_700_000_000.0)
    exchange = record()
    events.exchange_started(exchange)
    clock.now += 0.004
    events.response_started(exchange, 201, [("content-type", "text/plain")])
    clock.now += 0.0015
    events.exchange_finished(exchange)
    assert (exchange.started, exchange.response_at, exchange.ended) == (100.0, 100.004, 100.0055)
    assert exchange.wall_started == 1_700_000_000.0
    assert exchange.status == 201
    assert exchange.ms == pytest.approx(5.5)


def test_an_exchange_ends_once_as_finished() -> None:
    """A failure reported after the finish is ignored."""
    recorder = Recorder()
    events = Events([recorder])
    exchange = record()
    events.exchange_started(exchange)
    assert events.exchange_finished(exchange)
    assert not events.exchange_failed(exchange, Failure.CANCELLED)
    assert not events.exchange_finished(exchange)
    assert ends(recorder) == ["exchange_finished"]
    assert (exchange.outcome, exchange.failure) == ("finished", None)


def test_an_exchange_ends_once_as_failed_with_the_first_reason() -> None:
    recorder = Recorder()
    events = Events([recorder])
    exchange = record()
    events.exchange_started(exchange)
    assert events.exchange_failed(exchange, Failure.LOCAL_ERROR, "connection refused")
    assert not events.exchange_failed(exchange, Failure.TUNNEL_LOST)
    assert not events.exchange_finished(exchange)
    assert recorder.calls[-1] == ("exchange_failed", exchange, "connection refused")
    assert ends(recorder) == ["exchange_failed"]
    assert (exchange.outcome, exchange.failure) == ("failed", Failure.LOCAL_ERROR)


def test_a_failure_without_words_gets_a_reason() -> None:
    events = Events()
    exchange = record()
    events.exchange_failed(exchange, Failure.TUNNEL_LOST)
    assert exchange.reason == "tunnel lost"


def test_threads_racing_to_end_an_exchange_end_it_once() -> None:
    recorder = Recorder()
    events = Events([recorder])
    exchanges = [record(stream) for stream in range(1, 201)]
    start = threading.Barrier(2)

    def finish() -> None:
        start.wait(5)
        for exchange in exchanges:
            events.exchange_finished(exchange)

    def fail() -> None:
        start.wait(5)
        for exchange in reversed(exchanges):
            events.exchange_failed(exchange, Failure.CANCELLED)

    threads = [threading.Thread(target=finish), threading.Thread(target=fail)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(ends(recorder)) == len(exchanges)
    assert all(exchange.outcome is not None for exchange in exchanges)


def test_a_raising_observer_is_logged_once_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An observer that raises does not keep the record from ending or the others from hearing."""
    recorder = Recorder()
    events = Events([Raising(), recorder])
    with caplog.at_level(logging.DEBUG, logger="client.events"):
        for stream in (1, 2):
            exchange = record(stream)
            events.exchange_started(exchange)
            events.response_started(exchange, 200, [])
            events.request_body(exchange, b"x")
            assert events.exchange_finished(exchange)
    assert recorder.hooks().count("exchange_finished") == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    # One error with its traceback per failing hook; the repeats only at DEBUG.
    assert len(errors) == 4
    assert all(r.exc_info for r in errors)
    assert "Raising.exchange_finished" in caplog.text


def test_taps_reach_only_observers_that_subscribe() -> None:
    """Without a tapping observer, callers skip taps; with one, only it gets the bytes."""
    plain = Recorder()
    assert not Events([plain]).tapping
    tapping = Tapping()
    events = Events([plain, tapping])
    assert events.tapping
    exchange = record()
    events.request_body(exchange, b"up")
    events.response_body(exchange, b"down")
    events.websocket_message(SocketRecord(stream=3, path="/ws"), b"hi", True, False)
    assert plain.calls == []
    assert tapping.calls == [
        ("request_body", b"up"),
        ("response_body", b"down"),
        ("websocket_message", b"hi", True, False),
    ]


def test_a_websocket_ends_once() -> None:
    recorder = Recorder()
    clock = Clock()
    events = Events([recorder], clock=clock)
    opening = protocol.WsOpen(stream=7, path="/hmr", subprotocols=["vite-hmr"])
    socket = SocketRecord.from_opening(opening)
    events.websocket_opened(socket)
    clock.now += 1
    events.websocket_accepted(socket, "vite-hmr")
    assert events.websocket_closed(socket, 1000, "public")
    assert not events.websocket_failed(socket, Failure.TUNNEL_LOST)
    assert not events.websocket_closed(socket, 1006, "local")
    assert recorder.hooks() == ["websocket_opened", "websocket_accepted", "websocket_closed"]
    assert (socket.outcome, socket.code, socket.closed_by) == ("closed", 1000, "public")
    assert (socket.subprotocol, socket.accepted_at) == ("vite-hmr", 101.0)


def test_records_do_not_show_header_values() -> None:
    """A record in a log line or traceback never shows Authorization or Cookie values."""
    exchange = record()
    exchange.response_headers = [("set-cookie", "id=secret-set")]
    shown = repr(exchange)
    assert "secret" not in shown
    assert "/hook" in shown
