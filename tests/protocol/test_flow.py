"""Windows, chunking and reassembly: the flow-control rules, with no loop and no I/O."""

import pytest

from client.flow import (
    MessageTooBig,
    Reassembly,
    ReceiveWindow,
    SendWindow,
    chunk_count,
    split_chunks,
)
from client.protocol import CHUNK_SIZE, CREDIT_BATCH, WINDOW_CHUNKS, ProtocolError


def test_send_window_closes_after_a_window_of_chunks():
    """A sender may have exactly WINDOW_CHUNKS chunks out."""
    window = SendWindow()
    for _ in range(WINDOW_CHUNKS):
        assert window.open
        window.sent()
    assert not window.open


def test_send_window_reopens_with_credit():
    window = SendWindow(size=4)
    window.sent(4)
    assert window.granted(2) == 2
    assert window.available == 2


def test_credit_for_chunks_never_sent_is_ignored():
    """A receiver cannot widen the window beyond its size."""
    window = SendWindow(size=4)
    window.sent(1)
    assert window.granted(3) == 1
    assert window.available == 4
    assert window.granted(5) == 0


def test_receive_window_refuses_a_chunk_beyond_the_window():
    window = ReceiveWindow(size=2)
    window.received()
    window.received()
    with pytest.raises(ProtocolError):
        window.received()


def test_receive_window_credits_in_batches():
    """Credit goes back CREDIT_BATCH chunks at a time, and reopens the window."""
    window = ReceiveWindow()
    window.received(WINDOW_CHUNKS)
    credits = [window.consumed() for _ in range(CREDIT_BATCH)]
    assert credits == [0] * (CREDIT_BATCH - 1) + [CREDIT_BATCH]
    window.received(CREDIT_BATCH)  # exactly the credit handed back
    with pytest.raises(ProtocolError):
        window.received()


def test_receive_window_counts_several_chunks_at_once():
    window = ReceiveWindow(size=8, batch=4)
    window.received(6)
    assert window.consumed(3) == 0
    assert window.consumed(3) == 6
    assert window.in_flight == 0


def test_relayed_credit_reopens_the_window():
    """A hop that only passes credit on still lets the sender go on."""
    window = ReceiveWindow(size=2)
    window.received(2)
    window.credited(1)
    window.received()
    with pytest.raises(ProtocolError):
        window.received()


def test_batch_of_one_credits_every_chunk():
    window = ReceiveWindow(batch=1)
    window.received()
    assert window.consumed() == 1


@pytest.mark.parametrize(
    ("length", "sizes"),
    [
        (0, [0]),
        (1, [1]),
        (CHUNK_SIZE, [CHUNK_SIZE]),
        (CHUNK_SIZE + 1, [CHUNK_SIZE, 1]),
        (3 * CHUNK_SIZE, [CHUNK_SIZE] * 3),
    ],
)
def test_split_chunks_and_chunk_count_agree(length, sizes):
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    chunks = split_chunks(data)
    assert [len(chunk) for chunk in chunks] == sizes
    assert b"".join(chunks) == data
    assert chunk_count(length) == len(sizes)


def test_reassembly_joins_fragments_of_one_message():
    joiner = Reassembly()
    assert joiner.add(b"he", fin=False) is None
    assert joiner.add(b"llo", fin=True) == b"hello"
    assert joiner.add(b"", fin=True) == b""


def test_reassembly_refuses_a_message_past_the_limit():
    joiner = Reassembly(limit=4)
    joiner.add(b"abc", fin=False)
    with pytest.raises(MessageTooBig):
        joiner.add(b"de", fin=True)
    assert joiner.add(b"ok", fin=True) == b"ok"  # the next message starts afresh


def test_a_small_first_window_is_widened_once():
    """A request body starts with one chunk of window; starting the stream grants the rest."""
    sender, receiver = SendWindow(initial=1), ReceiveWindow(size=1)
    sender.sent()
    receiver.received()
    assert not sender.open
    with pytest.raises(ProtocolError):
        receiver.received()
    credit = receiver.widen(WINDOW_CHUNKS)
    assert credit == WINDOW_CHUNKS - 1
    assert sender.granted(credit) == credit
    assert sender.available == WINDOW_CHUNKS - 1
    assert receiver.widen(WINDOW_CHUNKS) == 0
