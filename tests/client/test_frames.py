"""Client frames: the fast mask must produce exactly websocket-client's bytes."""

import os

import pytest
import websocket

from client.frames import MaskedFrame, mask


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 126, 127, 65535, 65536, 65542, 200_001])
@pytest.mark.parametrize("opcode", [websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY])
def test_frame_matches_websocket_client(length, opcode):
    payload = os.urandom(length)
    key = os.urandom(4)
    ours = MaskedFrame(opcode, payload)
    ours.get_mask_key = lambda n: key
    theirs = websocket.ABNF(fin=1, opcode=opcode, mask_value=1, data=payload)
    theirs.get_mask_key = lambda n: key
    assert ours.format() == theirs.format()


def test_mask_is_its_own_inverse_and_uses_every_key_byte():
    payload = bytes(range(256)) * 3 + b"xyz"
    key = b"\x01\x02\x04\x80"
    masked = mask(key, payload)
    assert masked != payload
    assert [masked[i] ^ payload[i] for i in range(8)] == list(key) * 2
    assert mask(key, masked) == payload


def test_each_frame_gets_a_fresh_key():
    payload = b"same payload"
    first, second = MaskedFrame(2, payload).format(), MaskedFrame(2, payload).format()
    assert first[2:6] != second[2:6]
