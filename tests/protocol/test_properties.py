"""Property-based tests of the wire protocol: bad input only ever raises ProtocolError,
and every valid message survives encoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from client import protocol
from client.protocol import ProtocolError

MESSAGE_TYPES = [
    "auth",
    "auth_ok",
    "auth_error",
    "request",
    "response",
    "window",
    "error",
    "cancel",
    "ws_open",
    "ws_accept",
    "ws_reject",
    "ws_close",
]

# Any JSON value, nested a little: what a hostile peer can put in a field.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "stream",
        "status",
        "headers",
        "body",
        "data_follows",
        "method",
        "path",
        "token",
        "subdomain",
        "version",
        "chunks",
        "message",
        "subprotocols",
        "subprotocol",
        "code",
        "reason",
        "url",
    ]
)
# Objects shaped like messages: a known type and a few known keys with any values.
message_like = st.builds(
    lambda kind, fields: json.dumps({"type": kind, **fields}),
    st.sampled_from(MESSAGE_TYPES),
    st.dictionaries(field_names, json_values, max_size=6),
)


def decodes_or_refuses(text: str | bytes) -> None:
    try:
        message = protocol.decode(text)
    except ProtocolError:
        return
    # Whatever decodes is a message that encodes again.
    assert protocol.decode(protocol.encode(message)) == message


@given(st.text(max_size=300))
@example("[" * 100_000)
@example("{" * 100_000)
@example('{"type":"request","headers":' + "[" * 50_000 + "]" * 50_000 + "}")
@example("1" * 5000)
def test_decode_of_any_text_raises_only_protocol_error(text):
    """decode() of arbitrary text returns a message or raises ProtocolError, nothing else."""
    decodes_or_refuses(text)


@given(st.binary(max_size=300))
@example(b"\xff\xfe{}")
@example(b'{"type":"auth","token":"\xed\xa0\x80"}')
def test_decode_of_any_bytes_raises_only_protocol_error(data):
    """decode() of arbitrary bytes returns a message or raises ProtocolError."""
    decodes_or_refuses(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(message_like)
def test_decode_of_message_shaped_json_raises_only_protocol_error(text):
    """Known message types with arbitrary field values never escape as another exception."""
    decodes_or_refuses(text)


@given(st.binary(max_size=protocol.FRAME_HEADER.size + 64))
@example(b"\x01\x00\x00\x00\x00\x00")
@example(b"\x01\x01\xff\xff\xff\xff" + b"x" * (protocol.CHUNK_SIZE + 1))
def test_decode_data_of_any_bytes_raises_only_protocol_error(frame):
    """decode_data() of arbitrary bytes returns a frame or raises ProtocolError."""
    try:
        message = protocol.decode_data(frame)
    except ProtocolError:
        return
    assert protocol.decode_data(protocol.encode_data(message)) == message


stream_ids = st.integers(min_value=1, max_value=protocol.MAX_STREAM_ID)
tokens = st.from_regex(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20}", fullmatch=True)
latin1_values = st.text(
    alphabet=st.characters(codec="latin-1")
    .filter(lambda c: c == "\t" or c >= " ")
    .filter(lambda c: c != "\x7f"),
    max_size=30,
)
headers = st.lists(st.tuples(tokens, latin1_values), max_size=6)
paths = st.from_regex(r"/[\x21-\x7e]{0,40}", fullmatch=True)
close_reasons = st.text(max_size=30).filter(lambda r: len(r.encode("utf-8", "replace")) <= 123)

valid_messages = st.one_of(
    st.builds(
        protocol.Auth,
        token=st.text(max_size=40),
        subdomain=st.none() | st.from_regex(protocol.SUBDOMAIN_RE, fullmatch=True),
    ),
    st.builds(protocol.AuthOk, subdomain=st.text(max_size=10), url=st.text(max_size=40)),
    st.builds(protocol.AuthError, message=st.text(max_size=40)),
    st.builds(
        protocol.Request,
        stream=stream_ids,
        method=tokens,
        path=paths,
        headers=headers,
        body=st.booleans(),
    ),
    st.builds(
        lambda stream, status, hs, body, follows: protocol.Response(
            stream, status, hs, body, follows and body
        ),
        stream_ids,
        st.integers(min_value=200, max_value=599),
        headers,
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        protocol.Window,
        stream=stream_ids,
        chunks=st.integers(min_value=1, max_value=protocol.WINDOW_CHUNKS),
    ),
    st.builds(protocol.StreamError, stream=stream_ids, message=st.text(max_size=40)),
    st.builds(protocol.Cancel, stream=stream_ids),
    st.builds(
        protocol.WsOpen,
        stream=stream_ids,
        path=paths,
        headers=headers,
        subprotocols=st.lists(tokens, max_size=3),
    ),
    st.builds(protocol.WsAccept, stream=stream_ids, subprotocol=st.none() | tokens),
    st.builds(
        protocol.WsReject,
        stream=stream_ids,
        status=st.integers(min_value=300, max_value=599),
        headers=headers,
    ),
    st.builds(
        protocol.WsClose,
        stream=stream_ids,
        code=st.none() | st.integers(min_value=1000, max_value=4999).filter(protocol.is_close_code),
        reason=close_reasons,
    ),
)


@given(valid_messages)
def test_every_valid_control_message_roundtrips(message):
    """A valid control message decodes to exactly what was encoded."""
    assert protocol.decode(protocol.encode(message)) == message


@given(
    st.one_of(
        st.builds(
            protocol.Data,
            stream=stream_ids,
            payload=st.binary(max_size=200),
            end=st.booleans(),
        ),
        st.builds(
            protocol.WsFrame,
            stream=stream_ids,
            payload=st.binary(max_size=200),
            text=st.booleans(),
            fin=st.booleans(),
        ),
    )
)
def test_every_valid_binary_frame_roundtrips(message):
    """A body chunk or WebSocket fragment decodes to exactly what was encoded."""
    assert protocol.decode_data(protocol.encode_data(message)) == message


def test_deep_nesting_is_a_protocol_error_with_a_reason():
    """The audit's crash input is refused as nesting, not as a crash."""
    with pytest.raises(ProtocolError, match="nests too deeply"):
        protocol.decode("[" * 100_000)
