"""Flow control and framing of stream bodies: windows, chunks, reassembly. No I/O.

Every stream is windowed in each direction (``docs/protocol.md``): a sender has at
most ``WINDOW_CHUNKS`` chunks out that the receiver has not handed credit back
for, and a receiver hands credit back as it consumes them, ``CREDIT_BATCH`` at a
time. The same rules hold on every hop that carries a body: the view's stream,
the tunnel consumer, the public WebSocket bridge, and the client's HTTP stream
and local WebSocket. Each wraps these classes in its own lock or event; the
rules live only here (after h2's ``WindowManager``).
"""

from __future__ import annotations

from .protocol import CHUNK_SIZE, CREDIT_BATCH, MAX_WS_MESSAGE, WINDOW_CHUNKS, ProtocolError


class SendWindow:
    """Chunks we may still send before the receiver hands credit back.

    ``initial`` is what may go before the first credit (all of ``size`` by default).
    """

    def __init__(self, size: int = WINDOW_CHUNKS, initial: int | None = None) -> None:
        self.size = size
        self.available = size if initial is None else initial

    @property
    def open(self) -> bool:
        return self.available > 0

    def sent(self, chunks: int = 1) -> None:
        """Count ``chunks`` as sent; callers send only while the window is open."""
        self.available -= chunks

    def granted(self, chunks: int) -> int:
        """Take credit from the receiver; return what counts.

        Credit for chunks never sent is ignored, so a receiver cannot widen the
        window beyond its size.
        """
        counted = max(0, min(chunks, self.size - self.available))
        self.available += counted
        return counted


class ReceiveWindow:
    """The sender's window as the receiver keeps it, and the credit owed back.

    ``received`` refuses a chunk beyond the window (a protocol error); ``consumed``
    says how much credit to send back now, in batches of ``batch`` chunks, since
    each credit message is a round trip on some hops.
    """

    def __init__(self, size: int = WINDOW_CHUNKS, batch: int = CREDIT_BATCH) -> None:
        self.size = size
        self.batch = batch
        #: Chunks the sender has out: received, and not yet credited back.
        self.in_flight = 0
        self._owed = 0

    def received(self, chunks: int = 1) -> None:
        if self.in_flight + chunks > self.size:
            raise ProtocolError("a stream sent beyond its window")
        self.in_flight += chunks

    def widen(self, size: int) -> int:
        """Let the sender have ``size`` chunks out; return the credit that says so."""
        extra = max(0, size - self.size)
        self.size += extra
        return extra

    def consumed(self, chunks: int = 1) -> int:
        """Count ``chunks`` as consumed; return the credit to send back now (maybe 0)."""
        self._owed += chunks
        if self._owed < self.batch:
            return 0
        credit, self._owed = self._owed, 0
        self.in_flight -= credit
        return credit

    def credited(self, chunks: int) -> None:
        """Credit that went back on our behalf (a hop that only relays credit)."""
        self.in_flight = max(0, self.in_flight - chunks)


def split_chunks(data: bytes, size: int = CHUNK_SIZE) -> list[bytes]:
    """Cut ``data`` into chunks of at most ``size``; b"" is one empty chunk."""
    if len(data) <= size:
        return [data]
    return [data[offset : offset + size] for offset in range(0, len(data), size)]


def chunk_count(length: int) -> int:
    """How many wire chunks ``length`` bytes make (an empty body is one chunk)."""
    return max(1, -(-length // CHUNK_SIZE))


class MessageTooBig(Exception):
    """A WebSocket message grew past ``MAX_WS_MESSAGE`` (close with 1009)."""


class Reassembly:
    """Joins the fragments of one WebSocket message at a time."""

    def __init__(self, limit: int = MAX_WS_MESSAGE) -> None:
        self.limit = limit
        self._parts = bytearray()

    def add(self, fragment: bytes, fin: bool) -> bytes | None:
        """Add a fragment; return the whole message on its last one."""
        self._parts += fragment
        if len(self._parts) > self.limit:
            self._parts.clear()
            raise MessageTooBig(f"message larger than {self.limit} bytes")
        if not fin:
            return None
        message = bytes(self._parts)
        self._parts.clear()
        return message
