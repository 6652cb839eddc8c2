"""The inspector's memory: the last N exchanges and WebSockets, within a byte cap.

The tunnel's threads write here through ``capture.Capture``; the inspector's
server threads read. Every write holds one lock for microseconds and does no
I/O, so a tap never slows a stream: a body chunk is counted, and copied only
while its body is under the per-body cap.

Bounds: at most ``max_entries`` entries, and at most ``max_bytes`` of headers,
kept body bytes and message previews in all. Past either, the oldest entry is
dropped whole, even one still in flight (its later chunks are then ignored):
an entry is never left with a hole in it.

Readers get entries whose records keep changing (``bytes_out`` grows); what they
read under no lock is a moment's value, and bodies are copied under the lock.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ..events import ExchangeRecord, SocketRecord, StreamRecord
from ..protocol import Headers

#: Bytes of each WebSocket message kept as its preview.
PREVIEW_BYTES = 1024
#: Messages kept per WebSocket; older ones are dropped and counted.
MAX_MESSAGES = 1000


@dataclass(eq=False, slots=True)
class Captured:
    """The first ``cap`` bytes of a body; the rest is only counted."""

    cap: int
    data: bytearray = field(default_factory=bytearray)
    #: Bytes that went by, kept or not.
    seen: int = 0

    @property
    def truncated(self) -> bool:
        return self.seen > len(self.data)

    def take(self, chunk: bytes) -> int:
        """Count ``chunk`` and keep what fits under the cap; return the bytes kept."""
        self.seen += len(chunk)
        room = self.cap - len(self.data)
        if room <= 0:
            return 0
        kept = chunk if len(chunk) <= room else chunk[:room]
        self.data += kept
        return len(kept)


@dataclass(frozen=True)
class Message:
    """One WebSocket message: when, which way, what kind, and its first bytes."""

    wall: float
    from_public: bool
    text: bool
    size: int
    preview: bytes


@dataclass(eq=False, kw_only=True, slots=True)
class Entry:
    id: str
    #: Bytes this entry counts against the store's cap.
    size: int = 0
    #: The store version at this entry's last change (live updates send what changed).
    changed: int = 0


@dataclass(eq=False, kw_only=True, slots=True)
class HttpEntry(Entry):
    record: ExchangeRecord
    request_body: Captured
    response_body: Captured
    #: The id of the entry this one replays, if it is a replay.
    replay_of: str | None = None


@dataclass(eq=False, kw_only=True, slots=True)
class SocketEntry(Entry):
    record: SocketRecord
    messages: deque[Message] = field(default_factory=deque)
    #: Messages dropped from the front of ``messages`` (MAX_MESSAGES).
    messages_dropped: int = 0


class Store:
    """Entries in arrival order, bounded by count and bytes; thread-safe."""

    def __init__(self, max_entries: int, max_bytes: int, body_cap: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.body_cap = body_cap
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        #: Entries whose streams are still running, by record (dropped ones included).
        self._live: dict[StreamRecord, Entry] = {}
        #: Records that replays are about to start, and the id each replays.
        self._replays: dict[ExchangeRecord, str] = {}
        self._bytes = 0
        self._version = 0
        #: Threads in wait(): a change wakes them, and costs nothing when there are none.
        self._waiting = 0
        self._closed = False
        # ngrok's ids: 16 hex digits, in arrival order within one run.
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    # -- from the tunnel's threads -------------------------------------------

    def will_replay(self, record: ExchangeRecord, original: str) -> None:
        """Mark the exchange about to start for ``record`` as a replay of ``original``."""
        with self._lock:
            self._replays[record] = original

    def exchange_started(self, record: ExchangeRecord) -> None:
        with self._lock:
            entry = HttpEntry(
                id=self._new_id(),
                record=record,
                request_body=Captured(self.body_cap),
                response_body=Captured(self.body_cap),
                replay_of=self._replays.pop(record, None),
                size=_headers_size(record.request_headers),
            )
            self._add(record, entry)

    def response_started(self, record: ExchangeRecord) -> None:
        with self._lock:
            if (entry := self._kept(record)) is not None:
                self._grow(entry, _headers_size(record.response_headers))

    def request_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        with self._lock:
            entry = self._kept(record)
            if isinstance(entry, HttpEntry) and (kept := entry.request_body.take(chunk)):
                self._grow(entry, kept, notify=False)

    def response_body(self, record: ExchangeRecord, chunk: bytes) -> None:
        with self._lock:
            entry = self._kept(record)
            if isinstance(entry, HttpEntry) and (kept := entry.response_body.take(chunk)):
                self._grow(entry, kept, notify=False)

    def websocket_opened(self, record: SocketRecord) -> None:
        with self._lock:
            entry = SocketEntry(
                id=self._new_id(), record=record, size=_headers_size(record.request_headers)
            )
            self._add(record, entry)

    def websocket_message(
        self, record: SocketRecord, data: bytes, wall: float, text: bool, from_public: bool
    ) -> None:
        with self._lock:
            entry = self._kept(record)
            if not isinstance(entry, SocketEntry):
                return
            message = Message(wall, from_public, text, len(data), data[:PREVIEW_BYTES])
            entry.messages.append(message)
            grown = len(message.preview)
            if len(entry.messages) > MAX_MESSAGES:
                grown -= len(entry.messages.popleft().preview)
                entry.messages_dropped += 1
            self._grow(entry, grown)

    def changed(self, record: StreamRecord) -> None:
        """Something shown in the list changed (accepted, a status)."""
        with self._lock:
            if (entry := self._kept(record)) is not None:
                self._touch(entry)

    def ended(self, record: StreamRecord) -> None:
        with self._lock:
            entry = self._live.pop(record, None)
            if entry is not None and entry.id in self._entries:
                self._touch(entry)

    # -- readers --------------------------------------------------------------

    def id_of(self, record: StreamRecord) -> str:
        """The id of the running stream's entry ("" if there is none)."""
        with self._lock:
            entry = self._live.get(record)
            return "" if entry is None else entry.id

    def get(self, entry_id: str) -> Entry | None:
        with self._lock:
            return self._entries.get(entry_id)

    def entries(self) -> list[Entry]:
        """Every entry, oldest first."""
        with self._lock:
            return list(self._entries.values())

    def body(self, captured: Captured) -> bytes:
        """A copy of a body as kept so far."""
        with self._lock:
            return bytes(captured.data)

    def messages(self, entry: SocketEntry) -> tuple[list[Message], int]:
        """A copy of a WebSocket's messages kept so far, and how many were dropped."""
        with self._lock:
            return list(entry.messages), entry.messages_dropped

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def changes(self, since: int) -> tuple[int, list[str], list[Entry]]:
        """The version now, every id (oldest first) and the entries changed after ``since``."""
        with self._lock:
            ids = list(self._entries)
            changed = [e for e in self._entries.values() if e.changed > since]
            return self._version, ids, changed

    def wait(self, since: int, timeout: float) -> int:
        """Wait until the version passes ``since`` (or ``timeout``, or close); return it."""
        with self._changed:
            if self._version == since and not self._closed:
                self._waiting += 1
                try:
                    self._changed.wait(timeout)
                finally:
                    self._waiting -= 1
            return self._version

    def clear(self) -> None:
        """Drop every entry; streams still running are no longer recorded."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._bump()

    def close(self) -> None:
        """Wake every waiter for good: the inspector is stopping."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- under the lock -------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self._prefix}{next(self._ids):08x}"

    def _kept(self, record: StreamRecord) -> Entry | None:
        """The running stream's entry, unless it was dropped."""
        entry = self._live.get(record)
        return entry if entry is not None and entry.id in self._entries else None

    def _add(self, record: StreamRecord, entry: Entry) -> None:
        self._live[record] = entry
        self._entries[entry.id] = entry
        self._bytes += entry.size
        self._make_room()
        self._touch(entry)

    def _grow(self, entry: Entry, size: int, notify: bool = True) -> None:
        entry.size += size
        self._bytes += size
        if self._bytes > self.max_bytes:
            self._make_room()
            notify = True  # an entry went: the list changed
        if notify:
            self._touch(entry)

    def _make_room(self) -> None:
        """Drop the oldest entries, whole, until the bounds hold (one entry always stays)."""
        if len(self._entries) <= self.max_entries and self._bytes <= self.max_bytes:
            return
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    def _touch(self, entry: Entry) -> None:
        self._bump()
        entry.changed = self._version

    def _bump(self) -> None:
        self._version += 1
        if self._waiting:
            self._changed.notify_all()


def _headers_size(headers: Headers) -> int:
    """Bytes of a header block as it goes on the wire (``name: value\\r\\n``)."""
    return sum(map(len, itertools.chain.from_iterable(headers))) + 4 * len(headers)
