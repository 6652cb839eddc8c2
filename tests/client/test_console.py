"""The client's stdout: the lines a person reads, and the JSON lines programs read."""

from __future__ import annotations

import io
import json
import time

import pytest

from client import protocol
from client.cli import build_parser
from client.console import ConsoleLog, JsonLog, status_text, use_colour
from client.events import Events, ExchangeRecord, Failure, SocketRecord

SERVER = "ws://localhost:8000/tunnel"
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
    events.tunnel_active(
        "http://abc123.localhost:8000",
        "abc123",
        "http://localhost:3000",
        SERVER,
        0.0234,
        rules=("basic auth", "allow 10.0.0.0/8"),
    )
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
    events.tunnel_active("http://xyz789.localhost:8000", "xyz789", "http://localhost:3000", SERVER)


def test_console_prints_the_lines_people_know() -> None:
    out, clock = io.StringIO(), Clock()
    log = ConsoleLog(out)
    log.inspector("http://127.0.0.1:4040")
    run_a_session(Events([log], clock=clock), clock)
    assert out.getvalue().splitlines() == [
        "Tunnel active: http://abc123.localhost:8000",
        "→ forwarding to http://localhost:3000",
        "Rules at the edge: basic auth, allow 10.0.0.0/8",
        "Server: ws://localhost:8000/tunnel (online, 23 ms round trip)",
        "Inspector: http://127.0.0.1:4040",
        "POST    /webhooks/stripe  200  14 ms",
        "GET     /x  502 connection refused by the local server  1 ms",
        "WS      /hmr?t=1  open",
        "WS      /hmr?t=1  closed by the public side (1000)  1000 ms",
        "Tunnel down (connection lost); reconnecting in 1.3 s",
        "Subdomain abc123 was taken; this tunnel is now xyz789.",
        "Tunnel active: http://xyz789.localhost:8000",
        "→ forwarding to http://localhost:3000",
        "Server: ws://localhost:8000/tunnel (online)",
        "Inspector: http://127.0.0.1:4040",
    ]


def test_with_several_tunnels_each_line_names_its_tunnel() -> None:
    out, clock = io.StringIO(), Clock()
    log = ConsoleLog(out)
    log.label_tunnels()
    log.inspector(None, "--no-inspect")
    web = Events([log], clock=clock, name="web")
    web.tunnel_active("http://web.localhost:8000", "web", "http://localhost:5173", SERVER, 0.002)
    api = web.named("api")
    api.tunnel_down("connection lost", 0.5)
    request = exchange(9, "GET", "/api/items")
    api.exchange_started(request)
    api.response_started(request, 200, [])
    api.exchange_finished(request)
    assert out.getvalue().splitlines() == [
        "Tunnel web active: http://web.localhost:8000",
        "→ forwarding to http://localhost:5173",
        "Server: ws://localhost:8000/tunnel (online, 2 ms round trip)",
        "Inspector: off (--no-inspect)",
        "api  Tunnel down (connection lost); reconnecting in 0.5 s",
        "api  GET     /api/items  200  0 ms",
    ]


def test_json_lines_have_one_event_each() -> None:
    out, clock = io.StringIO(), Clock()
    run_a_session(Events([JsonLog(out)], clock=clock), clock)
    lines = out.getvalue().splitlines()
    assert all(line.startswith('{"event":') for line in lines)
    assert [json.loads(line) for line in lines] == [
        {
            "event": "tunnel_active",
            "tunnel": "command_line",
            "url": "http://abc123.localhost:8000",
            "subdomain": "abc123",
            "forwarding": "http://localhost:3000",
            "server": SERVER,
            "latency_ms": 23.4,
            "rules": ["basic auth", "allow 10.0.0.0/8"],
        },
        {
            "event": "exchange",
            "tunnel": "command_line",
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
            "tunnel": "command_line",
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
        {"event": "websocket_open", "tunnel": "command_line", "stream": 7, "path": "/hmr?t=1"},
        {
            "event": "websocket",
            "tunnel": "command_line",
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
        {
            "event": "tunnel_down",
            "tunnel": "command_line",
            "reason": "connection lost",
            "retry_in": 1.3,
        },
        {
            "event": "subdomain_changed",
            "tunnel": "command_line",
            "previous": "abc123",
            "subdomain": "xyz789",
        },
        {
            "event": "tunnel_active",
            "tunnel": "command_line",
            "url": "http://xyz789.localhost:8000",
            "subdomain": "xyz789",
            "forwarding": "http://localhost:3000",
            "server": SERVER,
            "latency_ms": None,
            "rules": [],
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
    ("failure", "status", "reason", "shown"),
    [
        (None, 204, "", "204"),
        (
            Failure.LOCAL_ERROR,
            None,
            "connection refused by localhost:3000",
            "502 connection refused by localhost:3000",
        ),
        (
            Failure.LOCAL_ERROR,
            200,
            "local server closed the connection mid-response",
            "200 aborted (local server closed the connection mid-response)",
        ),
        (Failure.CLIENT_ERROR, None, "", "502 client error"),
        (Failure.CANCELLED, None, "504: no response within 30 s", "504 no response within 30 s"),
        (Failure.CANCELLED, 200, "", "200 cancelled"),
        (Failure.CANCELLED, None, "", "cancelled"),
        (Failure.TUNNEL_LOST, None, "", "tunnel lost"),
    ],
)
def test_status_column(
    failure: Failure | None, status: int | None, reason: str, shown: str
) -> None:
    events = Events()
    record = exchange()
    events.exchange_started(record)
    if status is not None:
        events.response_started(record, status, [])
    if failure is None:
        events.exchange_finished(record)
    else:
        events.exchange_failed(record, failure, reason)
    assert status_text(record) == shown


def test_a_long_response_is_shown_when_it_starts_and_when_it_ends() -> None:
    """Server-sent events would otherwise be invisible until they end."""
    out = io.StringIO()
    events = Events([ConsoleLog(out)])
    record = exchange(path="/events")
    events.exchange_started(record)
    events.response_started(record, 200, [])
    deadline = time.monotonic() + 5
    while "streaming" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the console's output, with a deadline
    events.exchange_finished(record)
    lines = out.getvalue().splitlines()
    assert lines[0] == "GET     /events  200  streaming…"
    assert lines[1].startswith("GET     /events  200  ") and lines[1].endswith(" ms")


def test_colour_only_at_a_terminal_and_never_with_no_color() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_colour(Terminal(), {"TERM": "xterm"})
    assert not use_colour(Terminal(), {"TERM": "xterm", "NO_COLOR": "1"})
    assert not use_colour(io.StringIO(), {"TERM": "xterm"})
    out = Terminal()
    events = Events([ConsoleLog(out, environ={"TERM": "xterm"})])
    record = exchange()
    events.exchange_started(record)
    events.response_started(record, 404, [])
    events.exchange_finished(record)
    assert "\033[33m404\033[0m" in out.getvalue()


def test_log_format_is_text_unless_json_is_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["--port", "3000"]).log_format == "text"
    assert (
        build_parser().parse_args(["--port", "3000", "--log-format", "json"]).log_format == "json"
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--port", "3000", "--log-format", "xml"])
    assert "invalid choice" in capsys.readouterr().err


def _answer(events: Events, status: int) -> None:
    record = exchange()
    events.exchange_started(record)
    events.response_started(record, status, [])
    events.exchange_finished(record)


HINT = (
    "Hint: the local server answered 403. If it checks the Host header (Vite's "
    '"Blocked request", Django\'s ALLOWED_HOSTS, webpack, Rails), start the client '
    "with --host-header rewrite"
)


def test_the_first_403_of_a_tunnel_passing_the_public_host_hints_at_rewrite() -> None:
    out = io.StringIO()
    # A clock of the test's: on a busy machine a real one makes "0 ms" read "4 ms".
    events = Events([ConsoleLog(out)], clock=Clock())
    events.tunnel_active("http://a.localhost", "a", "http://localhost:5173", SERVER)
    _answer(events, 403)
    _answer(events, 403)
    events.tunnel_active("http://a.localhost", "a", "http://localhost:5173", SERVER)  # again
    _answer(events, 403)
    lines = out.getvalue().splitlines()
    line = "GET     /x  403  0 ms"
    assert lines[4:7] == [line, HINT, line]  # after the status block (4 lines)
    assert lines[-1] == line
    assert lines.count(HINT) == 1  # once a run, not again after a reconnection


def test_no_hint_once_the_host_is_rewritten() -> None:
    out = io.StringIO()
    events = Events([ConsoleLog(out)])
    events.tunnel_active(
        "http://a.localhost", "a", "http://localhost:5173", SERVER, host_header="rewrite"
    )
    _answer(events, 403)
    assert HINT not in out.getvalue().splitlines()


def test_a_refusal_at_the_edge_is_a_line_and_an_event() -> None:
    """The console says what was refused and by which rule; JSON has a refused event."""
    out, json_out = io.StringIO(), io.StringIO()
    Events([ConsoleLog(out), JsonLog(json_out)]).refused_at_edge("GET", "/path", 401, "basic auth")
    assert "401 GET /path refused at the edge: basic auth" in out.getvalue()
    event = json.loads(json_out.getvalue())
    assert (event["event"], event["path"], event["status"], event["rule"]) == (
        "refused",
        "/path",
        401,
        "basic auth",
    )
