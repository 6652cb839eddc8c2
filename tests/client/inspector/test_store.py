"""The store's bounds: the last N entries within a byte cap, the oldest dropped whole."""

from __future__ import annotations

from client import protocol
from client.events import ExchangeRecord, SocketRecord
from client.inspector.store import MAX_MESSAGES, PREVIEW_BYTES, HttpEntry, SocketEntry, Store


def exchange(stream: int, path: str = "/x") -> ExchangeRecord:
    return ExchangeRecord.from_request(protocol.Request(stream, "POST", path, [("host", "a")]))


def started(store: Store, stream: int) -> ExchangeRecord:
    record = exchange(stream, f"/{stream}")
    store.exchange_started(record)
    return record


def paths(store: Store) -> list[str]:
    return [entry.record.path for entry in store.entries()]  # type: ignore[attr-defined]


def test_past_n_entries_the_oldest_go() -> None:
    store = Store(max_entries=3, max_bytes=1 << 20, body_cap=1024)
    for stream in range(1, 6):
        store.ended(started(store, stream))
    assert paths(store) == ["/3", "/4", "/5"]


def test_ids_are_16_hex_digits_in_arrival_order() -> None:
    store = Store(max_entries=10, max_bytes=1 << 20, body_cap=1024)
    for stream in range(1, 4):
        started(store, stream)
    ids = [entry.id for entry in store.entries()]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_past_the_byte_cap_the_oldest_entry_goes_whole() -> None:
    """The cap drops entries, never a chunk out of an entry that stays."""
    store = Store(max_entries=100, max_bytes=10_000, body_cap=4000)
    first, second = started(store, 1), started(store, 2)
    store.request_body(first, b"a" * 3000)
    store.response_body(second, b"b" * 3000)
    assert store.bytes <= 10_000 and paths(store) == ["/1", "/2"]
    third = started(store, 3)
    store.response_body(third, b"c" * 4000)  # 10000 + headers: over the cap
    assert paths(store) == ["/2", "/3"]
    kept = {e.record.path: e for e in store.entries() if isinstance(e, HttpEntry)}
    assert store.body(kept["/2"].response_body) == b"b" * 3000
    assert store.body(kept["/3"].response_body) == b"c" * 4000
    assert store.bytes == sum(entry.size for entry in store.entries()) <= 10_000


def test_a_dropped_entry_in_flight_takes_no_more_bytes() -> None:
    store = Store(max_entries=1, max_bytes=1 << 20, body_cap=1 << 20)
    running = started(store, 1)
    started(store, 2)  # drops the first, still running
    store.response_body(running, b"x" * 5000)
    store.response_started(running)
    assert paths(store) == ["/2"]
    assert store.bytes == sum(entry.size for entry in store.entries())


def test_a_body_is_kept_up_to_its_cap_and_counted_past_it() -> None:
    store = Store(max_entries=10, max_bytes=1 << 20, body_cap=100)
    record = started(store, 1)
    for _ in range(3):
        store.request_body(record, b"y" * 60)
    (entry,) = store.entries()
    assert isinstance(entry, HttpEntry)
    assert store.body(entry.request_body) == b"y" * 100
    assert (entry.request_body.seen, entry.request_body.truncated) == (180, True)


def test_one_entry_always_stays() -> None:
    """An entry alone over the cap (its headers) is kept: the store is never emptied by it."""
    store = Store(max_entries=10, max_bytes=10, body_cap=5)
    started(store, 1)
    assert paths(store) == ["/1"]


def test_clear_empties_and_running_streams_stay_out() -> None:
    store = Store(max_entries=10, max_bytes=1 << 20, body_cap=100)
    running = started(store, 1)
    store.clear()
    store.response_body(running, b"late")
    store.ended(running)
    assert store.entries() == [] and store.bytes == 0


def test_a_replay_is_marked_with_what_it_replays() -> None:
    store = Store(max_entries=10, max_bytes=1 << 20, body_cap=100)
    original = started(store, 1)
    again = exchange(2)
    store.will_replay(again, store.id_of(original))
    store.exchange_started(again)
    first, second = store.entries()
    assert isinstance(second, HttpEntry) and second.replay_of == first.id


def test_websocket_messages_keep_a_preview_and_drop_the_oldest_past_the_limit() -> None:
    store = Store(max_entries=10, max_bytes=1 << 30, body_cap=100)
    record = SocketRecord.from_opening(protocol.WsOpen(stream=1, path="/ws"))
    store.websocket_opened(record)
    store.websocket_message(record, b"z" * (PREVIEW_BYTES * 2), 1.0, text=True, from_public=True)
    for n in range(MAX_MESSAGES):
        store.websocket_message(record, b"%d" % n, 2.0, text=False, from_public=False)
    (entry,) = store.entries()
    assert isinstance(entry, SocketEntry)
    messages, dropped = store.messages(entry)
    assert dropped == 1 and len(messages) == MAX_MESSAGES
    assert messages[0].preview == b"0" and messages[-1].preview == b"%d" % (MAX_MESSAGES - 1)
    assert store.bytes == entry.size


def test_changes_name_every_id_and_only_what_changed() -> None:
    store = Store(max_entries=10, max_bytes=1 << 20, body_cap=100)
    first = started(store, 1)
    version, ids, changed = store.changes(0)
    assert len(ids) == 1 and len(changed) == 1
    started(store, 2)
    store.ended(first)
    later, ids, changed = store.changes(version)
    assert later > version and len(ids) == 2
    assert {entry.record.path for entry in changed} == {"/1", "/2"}  # type: ignore[attr-defined]
    store.request_body(first, b"chunks do not wake the page")
    assert store.changes(later)[2] == []


def test_wait_returns_on_a_change_or_close() -> None:
    store = Store(max_entries=10, max_bytes=1 << 20, body_cap=100)
    assert store.wait(store.version, timeout=0.01) == 0
    started(store, 1)
    assert store.wait(0, timeout=10) == 1  # already past: no wait
    store.close()
    assert store.wait(store.version, timeout=10) == store.version and store.closed
