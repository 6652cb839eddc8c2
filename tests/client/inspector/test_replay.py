"""What a replay sends: the stored request as it came, or with edits and honest framing."""

from __future__ import annotations

import pytest

from client import protocol
from client.events import Events, ExchangeRecord, Failure
from client.inspector.replay import Edits, ReplayRefused, replay_request, why_not_replayable
from client.inspector.store import HttpEntry, Store

HEADERS = [("host", "abc.localhost"), ("content-type", "text/plain"), ("content-length", "5")]


def captured(
    body: bytes = b"hello", headers: protocol.Headers = HEADERS, cap: int = 100
) -> HttpEntry:
    """An ended exchange as the store keeps it."""
    store = Store(max_entries=10, max_bytes=1 << 20, body_cap=cap)
    events = Events()
    record = ExchangeRecord.from_request(
        protocol.Request(1, "POST", "/in?x=1", headers, bool(body))
    )
    events.exchange_started(record)
    store.exchange_started(record)
    store.request_body(record, body)
    events.response_started(record, 200, [])
    events.exchange_finished(record)
    (entry,) = store.entries()
    assert isinstance(entry, HttpEntry)
    return entry


def test_unedited_it_is_the_stored_request() -> None:
    request, body = replay_request(captured(), b"hello", None, stream=7)
    assert request == protocol.Request(7, "POST", "/in?x=1", HEADERS, body=True)
    assert body == b"hello"


def test_an_edited_body_gets_its_own_length() -> None:
    edits = Edits(body=b"a longer body")
    request, body = replay_request(captured(), b"hello", edits, stream=7)
    assert body == b"a longer body"
    assert protocol.header_values(request.headers, "content-length") == ["13"]


def test_edited_method_path_and_headers() -> None:
    edits = Edits(
        method="put", path="/other", headers=[("X-Edited", "yes"), ("Connection", "close")]
    )
    request, body = replay_request(captured(), b"hello", edits, stream=7)
    assert (request.method, request.path, body) == ("PUT", "/other", b"hello")
    # Hop-by-hop fields are dropped; the length is the body's.
    assert request.headers == [("X-Edited", "yes"), ("Content-Length", "5")]


@pytest.mark.parametrize(
    "edits",
    [
        Edits(path="http://elsewhere.example/"),
        Edits(path="/with space"),
        Edits(method="GE T"),
        Edits(headers=[("Bad Name", "x")]),
        Edits(headers=[("X-Ok", "line\nbreak")]),
    ],
)
def test_edits_the_tunnel_would_refuse_are_refused(edits: Edits) -> None:
    with pytest.raises(ReplayRefused):
        replay_request(captured(), b"hello", edits, stream=7)


def test_a_body_larger_than_the_cap_cannot_be_replayed_unless_replaced() -> None:
    entry = captured(b"x" * 50, [("content-length", "50")], cap=10)
    assert why_not_replayable(entry) == "the request body was larger than the inspector keeps"
    with pytest.raises(ReplayRefused, match="larger than the inspector keeps"):
        replay_request(entry, b"x" * 10, None, stream=7)
    _, body = replay_request(entry, b"x" * 10, Edits(body=b"new"), stream=7)
    assert body == b"new"


def test_a_body_that_did_not_arrive_whole_cannot_be_replayed() -> None:
    entry = captured(b"hel", HEADERS)  # Content-Length: 5, 3 bytes came
    assert why_not_replayable(entry) == "the request body did not arrive whole"


def test_a_request_in_flight_cannot_be_replayed() -> None:
    store = Store(max_entries=10, max_bytes=1 << 20, body_cap=100)
    record = ExchangeRecord.from_request(protocol.Request(1, "GET", "/", []))
    store.exchange_started(record)
    (entry,) = store.entries()
    assert isinstance(entry, HttpEntry)
    assert why_not_replayable(entry) == "the request is still in flight"
    Events().exchange_failed(record, Failure.CANCELLED)
    assert why_not_replayable(entry) == ""
