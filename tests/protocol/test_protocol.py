"""The wire protocol, bytes in and messages out: no Django, no network."""

import json

import pytest

from client import protocol
from client.protocol import ProtocolError


def roundtrip(message):
    return protocol.decode(protocol.encode(message))


@pytest.mark.parametrize(
    "message",
    [
        protocol.Auth(token="lmn_x", subdomain="abc123"),
        protocol.Auth(token="lmn_x"),
        protocol.AuthOk(subdomain="abc123", url="https://abc123.example.com"),
        protocol.AuthError(message="invalid token"),
        protocol.Request(
            stream=7,
            method="POST",
            path="/a%2Fb?x=1&y=%20",
            headers=[("host", "abc123.example.com"), ("x-bin", "caf\xe9\xff")],
            body=True,
        ),
        protocol.Response(
            stream=7, status=418, headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
        ),
        protocol.Response(stream=7, status=200, body=True, data_follows=True),
        protocol.Window(stream=1, chunks=protocol.WINDOW_CHUNKS),
        protocol.StreamError(stream=3, message="connection refused"),
        protocol.Cancel(stream=2**32 - 1),
        protocol.WsOpen(
            stream=9,
            path="/ws?token=x",
            headers=[("origin", "https://a.example")],
            subprotocols=["v2", "chat"],
        ),
        protocol.WsAccept(stream=9, subprotocol="chat"),
        protocol.WsAccept(stream=9),
        protocol.WsReject(stream=9, status=404, headers=[("content-type", "text/plain")]),
        protocol.WsClose(stream=9, code=4321, reason="bye é"),
        protocol.WsClose(stream=9),
    ],
)
def test_control_messages_roundtrip(message):
    """Every control message decodes to what was encoded."""
    assert roundtrip(message) == message


def test_header_bytes_survive_as_latin1():
    """Header values keep every byte 0x80-0xFF through JSON."""
    value = "".join(chr(b) for b in range(0x80, 0x100))
    message = protocol.Response(stream=1, status=200, headers=[("x-raw", value)])
    assert roundtrip(message).headers == [("x-raw", value)]


def test_repeated_headers_keep_order():
    """Repeated header lines stay separate and in order."""
    headers = [("Set-Cookie", "a=1; Path=/"), ("X", "1"), ("Set-Cookie", "b=2, c=3")]
    assert roundtrip(protocol.Response(stream=1, status=200, headers=headers)).headers == headers


def test_auth_repr_hides_token():
    """An Auth message never shows its token when printed or logged."""
    assert "lmn_secret" not in repr(protocol.Auth(token="lmn_secret"))


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)) * 256])
@pytest.mark.parametrize("end", [False, True])
def test_data_frames_roundtrip(payload, end):
    """Binary frames carry their stream, end flag and exact payload."""
    frame = protocol.encode_data(protocol.Data(stream=5, payload=payload, end=end))
    assert frame[:6] == bytes([1, 1 if end else 0, 0, 0, 0, 5])
    assert protocol.decode_data(frame) == protocol.Data(5, payload, end)


@pytest.mark.parametrize("text", [False, True])
@pytest.mark.parametrize("fin", [False, True])
def test_websocket_fragments_roundtrip(text, fin):
    """WebSocket fragments keep their kind (text or binary), FIN flag and bytes."""
    message = protocol.WsFrame(stream=3, payload=b"\x00caf\xc3\xa9", text=text, fin=fin)
    frame = protocol.encode_data(message)
    assert frame[0] == (protocol.FRAME_WS_TEXT if text else protocol.FRAME_WS_BINARY)
    assert protocol.decode_data(frame) == message


def test_largest_chunk_fits_under_daphne_limit():
    """A full chunk plus header stays under daphne's 1 MiB message cap."""
    frame = protocol.encode_data(protocol.Data(1, b"x" * protocol.CHUNK_SIZE))
    assert len(frame) < 1024 * 1024
    assert protocol.decode_data(frame).payload == b"x" * protocol.CHUNK_SIZE


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01\x00\x00",
        b"\x09\x00\x00\x00\x00\x01",  # unknown kind
        b"\x01\x80\x00\x00\x00\x01",  # unknown flag
        b"\x01\x00\x00\x00\x00\x00",  # stream 0
        b"\x01\x00\x00\x00\x00\x01" + b"x" * (protocol.CHUNK_SIZE + 1),
    ],
)
def test_bad_binary_frames_are_refused(frame):
    """Malformed binary frames raise ProtocolError and nothing else."""
    with pytest.raises(ProtocolError):
        protocol.decode_data(frame)


def _request(**overrides):
    body = {"type": "request", "stream": 1, "method": "GET", "path": "/", "headers": []}
    body.update(overrides)
    return json.dumps(body)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        "{}",
        '{"type": "nope"}',
        '{"type": "auth"}',
        '{"type": "auth", "token": 5}',
        '{"type": "auth", "token": "t", "version": 99}',
        # Longer than any DNS label; a name that breaks the rules otherwise is
        # refused by the session, with the reason (tests/tunnels/test_names.py).
        '{"type": "auth", "token": "t", "subdomain": "' + "a" * 64 + '"}',
        '{"type": "auth", "token": "t", "subdomain": 5}',
        '{"type": "auth", "token": "t", "required": "yes"}',
        _request(stream=0),
        _request(stream=-1),
        _request(stream=2**32),
        _request(stream="1"),
        _request(stream=True),
        _request(method="GET /x"),
        _request(method=""),
        _request(path="http://evil.example/"),
        _request(path="evil.example:80"),
        _request(path="@evil.example/"),
        _request(path=""),
        _request(path="/a b"),
        _request(path="/a\r\nHost: evil"),
        _request(path="/\u00e9"),
        _request(path="*"),
        _request(path="/" + "a" * protocol.MAX_PATH_BYTES),
        _request(headers={"a": "b"}),
        _request(headers=[["a"]]),
        _request(headers=[["a", 1]]),
        _request(headers=[["bad name", "v"]]),
        _request(headers=[["x", "a\r\nInjected: 1"]]),
        _request(headers=[["x", "a\x00"]]),
        _request(headers=[["x", "\u0100"]]),
        _request(headers=[["x", "v"]] * (protocol.MAX_HEADER_COUNT + 1)),
        _request(headers=[["x", "v" * 70_000], ["y", "v" * 70_000]]),
        _request(body="yes"),
        '{"type": "response", "stream": 1, "status": 99}',
        '{"type": "response", "stream": 1, "status": 101}',
        '{"type": "response", "stream": 1, "status": 600}',
        '{"type": "response", "stream": 1, "status": true}',
        '{"type": "response", "stream": 1, "status": 200, "data_follows": true}',
        '{"type": "response", "stream": 1, "status": 200, "body": true, "data_follows": 1}',
        '{"type": "window", "stream": 1, "chunks": 0}',
        '{"type": "window", "stream": 1, "chunks": 1000}',
        '{"type": "error", "stream": 1}',
        '{"type": "cancel"}',
        json.dumps({"type": "auth", "token": "x" * protocol.MAX_CONTROL_BYTES}),
        '{"type": "ws_open", "stream": 1, "path": "http://evil.example/"}',
        '{"type": "ws_open", "stream": 1, "path": "/", "subprotocols": "chat"}',
        '{"type": "ws_open", "stream": 1, "path": "/", "subprotocols": ["a b"]}',
        '{"type": "ws_open", "stream": 1, "path": "/", "subprotocols": [1]}',
        '{"type": "ws_accept", "stream": 1, "subprotocol": "x,y"}',
        '{"type": "ws_reject", "stream": 1, "status": 101}',
        '{"type": "ws_reject", "stream": 1, "status": 700}',
        '{"type": "ws_close", "stream": 1, "code": 999}',
        '{"type": "ws_close", "stream": 1, "code": 5000}',
        '{"type": "ws_close", "stream": 1, "code": "1000"}',
        '{"type": "ws_close", "stream": 1, "code": 1000, "reason": 5}',
        json.dumps({"type": "ws_close", "stream": 1, "code": 1000, "reason": "x" * 124}),
    ],
)
def test_bad_control_messages_are_refused(text):
    """Malformed, oversize or out-of-range messages raise ProtocolError and nothing else."""
    with pytest.raises(ProtocolError):
        protocol.decode(text)


def test_options_star_is_allowed():
    """``OPTIONS *`` is the one non-path target allowed."""
    assert roundtrip(protocol.Request(stream=1, method="OPTIONS", path="*")).path == "*"


def test_end_to_end_drops_hop_by_hop_and_connection_named_headers():
    """Hop-by-hop fields and those named in Connection are dropped; the rest keep order."""
    headers = [
        ("Host", "h"),
        ("Connection", "keep-alive, X-Private"),
        ("Keep-Alive", "timeout=5"),
        ("X-Private", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Set-Cookie", "a=1"),
        ("Upgrade", "h2c"),
        ("Set-Cookie", "b=2"),
    ]
    assert protocol.end_to_end(headers) == [
        ("Host", "h"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]


@pytest.mark.parametrize(
    ("headers", "chunked"),
    [
        ([("Transfer-Encoding", "chunked")], True),
        ([("transfer-encoding", "gzip, Chunked")], True),
        ([("Transfer-Encoding", "gzip")], False),
        ([("Content-Length", "5")], False),
        ([], False),
    ],
)
def test_is_chunked(headers, chunked):
    """Chunked framing is recognised in any case and position."""
    assert protocol.is_chunked(headers) is chunked


@pytest.mark.parametrize(
    ("values", "length"),
    [([], None), (["0"], 0), (["5"], 5), (["5", "5"], 5), (["5, 5"], 5), ([" 7 "], 7)],
)
def test_declared_length_reads_one_agreed_length(values, length):
    """No Content-Length is None; repeated identical values are one length."""
    headers = [("Content-Length", value) for value in values]
    assert protocol.declared_length([("X-Other", "1"), *headers]) == length


@pytest.mark.parametrize(
    "values",
    [["5", "6"], ["5, 6"], ["-5"], ["+5"], ["5 5"], ["0x5"], [""], ["1" * 20], ["5,"]],
)
def test_declared_length_refuses_what_cannot_be_trusted(values):
    """Conflicting or malformed lengths are a ProtocolError, never a guess."""
    with pytest.raises(ProtocolError):
        protocol.declared_length([("content-length", value) for value in values])


@pytest.mark.parametrize(
    "message",
    [
        protocol.AuthOk(subdomain="abc123", url="http://x"),
        protocol.AuthError(message="no"),
        protocol.Request(stream=1, method="GET", path="/"),
        protocol.Cancel(stream=1),
        protocol.WsOpen(stream=1, path="/"),
    ],
)
def test_the_server_refuses_messages_only_the_server_sends(message):
    with pytest.raises(ProtocolError, match="sent by the server only"):
        protocol.decode_from_client(protocol.encode(message))
    assert protocol.decode_from_server(protocol.encode(message)) == message


@pytest.mark.parametrize(
    "message",
    [
        protocol.Auth(token="lmn_x"),
        protocol.Response(stream=1, status=200),
        protocol.StreamError(stream=1, message="x"),
        protocol.WsAccept(stream=1),
        protocol.WsReject(stream=1, status=403),
    ],
)
def test_the_client_refuses_messages_only_the_client_sends(message):
    with pytest.raises(ProtocolError, match="sent by the client only"):
        protocol.decode_from_server(protocol.encode(message))
    assert protocol.decode_from_client(protocol.encode(message)) == message


@pytest.mark.parametrize(
    "message",
    [protocol.Window(stream=1, chunks=1), protocol.WsClose(stream=1, code=1000)],
)
def test_messages_of_both_directions_pass_either_way(message):
    text = protocol.encode(message)
    assert protocol.decode_from_client(text) == protocol.decode_from_server(text) == message


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "response", "stream": 7, "status": 103},
        {"type": "response", "stream": 7, "status": 999},
        {"type": "response", "stream": 7, "status": 200, "headers": [["bad name", "x"]]},
        {"type": "ws_reject", "stream": 7, "status": 200},
        {"type": "ws_reject", "stream": 7, "status": 100},
        {"type": "ws_close", "stream": 7, "code": 1004},
        {"type": "ws_close", "stream": 7, "code": 1005},
        {"type": "ws_close", "stream": 7, "code": 1015},
        {"type": "ws_close", "stream": 7, "code": 2999},
        {"type": "ws_close", "stream": 7, "code": 1000, "reason": "\ud800"},
        {"type": "ws_accept", "stream": 7, "subprotocol": "a b"},
        {"type": "error", "stream": 7, "message": 5},
    ],
)
def test_a_bad_message_for_one_stream_refuses_only_that_stream(raw):
    """What a local server may cause (odd statuses, close codes) fails its stream alone."""
    with pytest.raises(protocol.StreamRefused) as refused:
        protocol.decode(json.dumps(raw))
    assert refused.value.stream == 7


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "response", "stream": 0, "status": 200},
        {"type": "window", "stream": 7, "chunks": protocol.WINDOW_CHUNKS + 1},
        {"type": "response", "status": 200},
    ],
)
def test_a_bad_stream_id_or_window_is_a_tunnel_error(raw):
    with pytest.raises(ProtocolError) as refused:
        protocol.decode(json.dumps(raw))
    assert not isinstance(refused.value, protocol.StreamRefused)


@pytest.mark.parametrize(
    ("code", "allowed"),
    [(1000, True), (1003, True), (1004, False), (1005, False), (1006, True), (1011, True),
     (1014, True), (1015, False), (1016, False), (2999, False), (3000, True), (4999, True)],
)  # fmt: skip
def test_close_codes_follow_rfc_6455(code, allowed):
    assert protocol.is_close_code(code) is allowed


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (1000, "bye", (1000, "bye")),
        (1005, "", (None, "")),
        (1004, "x", (None, "x")),
        (1006, "", (1006, "")),
        (4000, "é" * 100, (4000, "é" * 61)),  # 122 bytes: a whole character fits no more
        (None, "a" * 200, (None, "a" * 123)),
        (1000, "\ud800 lone", (1000, "? lone")),
    ],
)
def test_close_fields_make_any_close_fit_a_ws_close(code, reason, expected):
    """Whatever a WebSocket library reports becomes a ws_close the peer accepts."""
    assert protocol.close_fields(code, reason) == expected
    closing = protocol.WsClose(1, *protocol.close_fields(code, reason))
    assert protocol.decode(protocol.encode(closing)) == closing
