"""The client's stdout: the lines a person reads, and the JSON lines programs read."""

from __future__ import annotations

import io
import json

import pytest

from client import protocol
from client.cli import build_parser
from client.console import ConsoleLog, JsonLog, status_text
from client.events import Events, ExchangeRecord, Failure, SocketRecord

SECRETS = ("Bearer secret-auth", "session=secret-cookie", "secret-set-cookie")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def exchange(stream: int = 3, method: str = "GET", path: str = "/x") -> ExchangeRecord:
    return ExchangeRecord.from_request(
        protocol.Request(
            stream=stream,
            method=method,
            path=path,
            headers=[("authorization", SECRETS[0]), ("cookie", SECRETS[1])],
        )
    )


def socket(stream: int = 7) -> SocketRecord:
    return SocketRecord.from_opening(
        protocol.WsOpen(stream=stream, path="/hmr?t=1", headers=[("cookie", SECRETS[1])])
    )


def run_a_session(events: Events, clock: Clock) -> None:
    """A tunnel's life: up, a request, a failed one, a WebSocket, down, back with a new name."""
    events.tunnel_active("http://abc123.localhost:8000", "abc123", "http://localhost:3000")
    ok = exchange(3, "POST", "/webhooks/stripe")
    events.exchange_started(ok)
    clock.now += 0.014
    events.response_started(ok, 200, [("set-cookie", SECRETS[2])])
    ok.bytes_in, ok.bytes_out = 120, 2
    events.exchange_finished(ok)
    refused = exchange(5)
    events.exchange_started(refused)
    clock.now += 0.0012
    events.exchange_failed(refused, Failure.LOCAL_ERROR, "connection refused by the local server")
    ws = socket()
    events.websocket_opened(ws)
    events.websocket_accepted(ws, None)
    ws.bytes_in, ws.bytes_out, ws.messages_in, ws.messages_out = 5, 10, 1, 2
    clock.now += 1
    events.websocket_closed(ws, 1000, "public")
    events.tunnel_down("connection lost", 1.26)
    events.subdomain_changed("abc123", "xyz789")
    events.tunnel_active("http://xyz789.localhost:8000", "xyz789", "http://localhost:3000")


def test_console_prints_the_lines_people_know() -> None:
    out, clock = io.StringIO(), Clock()
    run_a_session(Events([ConsoleLog(out)], clock=clock), clock)
    assert out.getvalue().splitlines() == [
        "Tunnel active: http://abc123.localhost:8000",
        "→ forwarding to http://localhost:3000",
        "POST    /webhooks/stripe  200  14 ms",
        "GET     /x  502  1 ms",
        "WS      /hmr?t=1  open",
        "WS      stream 7  closed",
        "Tunnel down (connection lost); reconnecting in 1.3 s",
        "Previous subdomain abc123 was taken.",
        "Tunnel active: http://xyz789.localhost:8000",
        "→ forwarding to http://localhost:3000",
    ]


def test_json_lines_have_one_event_each() -> None:
    out, clock = io.StringIO(), Clock()
    run_a_session(Events([JsonLog(out)], clock=clock), clock)
    lines = out.getvalue().splitlines()
    assert all(line.startswith('{"event":') for line in lines)
    assert [json.loads(line) for line in lines] == [
        {
            "event": "tunnel_active",
            "url": "http://abc123.localhost:8000",
            "subdomain": "abc123",
            "forwarding": "http://localhost:3000",
        },
        {
            "event": "exchange",
            "stream": 3,
            "method": "POST",
            "path": "/webhooks/stripe",
            "status": 200,
            "outcome": "finished",
            "ms": 14.0,
            "bytes_in": 120,
            "bytes_out": 2,
        },
        {
            "event": "exchange",
            "stream": 5,
            "method": "GET",
            "path": "/x",
            "status": None,
            "outcome": "failed",
            "failure": "local_error",
            "reason": "connection refused by the local server",
            "ms": 1.2,
            "bytes_in": 0,
            "bytes_out": 0,
        },
        {"event": "websocket_open", "stream": 7, "path": "/hmr?t=1"},
        {
            "event": "websocket",
            "stream": 7,
            "path": "/hmr?t=1",
            "code": 1000,
            "closed_by": "public",
            "outcome": "closed",
            "ms": 1000.0,
            "bytes_in": 5,
            "bytes_out": 10,
            "messages_in": 1,
            "messages_out": 2,
        },
        {"event": "tunnel_down", "reason": "connection lost", "retry_in": 1.3},
        {"event": "subdomain_changed", "previous": "abc123", "subdomain": "xyz789"},
        {
            "event": "tunnel_active",
            "url": "http://xyz789.localhost:8000",
            "subdomain": "xyz789",
            "forwarding": "http://localhost:3000",
        },
    ]


def test_a_failed_websocket_says_why() -> None:
    out = io.StringIO()
    events = Events([JsonLog(out)])
    ws = socket()
    events.websocket_opened(ws)
    events.websocket_failed(ws, Failure.REFUSED, "local server refused with 404")
    last = json.loads(out.getvalue().splitlines()[-1])
    assert (last["outcome"], last["failure"], last["reason"]) == (
        "failed",
        "refused",
        "local server refused with 404",
    )
    assert "code" not in last


@pytest.mark.parametrize("output", [ConsoleLog, JsonLog])
def test_no_header_value_reaches_the_output(output: type[ConsoleLog] | type[JsonLog]) -> None:
    out, clock = io.StringIO(), Clock()
    run_a_session(Events([output(out)], clock=clock), clock)
    assert not [secret for secret in SECRETS if secret in out.getvalue()]


@pytest.mark.parametrize(
    ("failure", "status", "shown"),
    [
        (None, 204, "204"),
        (Failure.LOCAL_ERROR, None, "502"),
        (Failure.LOCAL_ERROR, 200, "200 aborted"),
        (Failure.CLIENT_ERROR, None, "502"),
        (Failure.CANCELLED, 200, "cancelled"),
        (Failure.TUNNEL_LOST, None, "tunnel lost"),
    ],
)
def test_status_column(failure: Failure | None, status: int | None, shown: str) -> None:
    events = Events()
    record = exchange()
    events.exchange_started(record)
    if status is not None:
        events.response_started(record, status, [])
    if failure is None:
        events.exchange_finished(record)
    else:
        events.exchange_failed(record, failure)
    assert status_text(record) == shown


def test_log_format_is_text_unless_json_is_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["--port", "3000"]).log_format == "text"
    assert (
        build_parser().parse_args(["--port", "3000", "--log-format", "json"]).log_format == "json"
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--port", "3000", "--log-format", "xml"])
    assert "invalid choice" in capsys.readouterr().err
