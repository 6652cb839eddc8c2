"""Refusals at the edge in the inspector: listed, ended, with an "edge" badge."""

from __future__ import annotations

from client.events import COMMAND_LINE, Events
from client.inspector.capture import Capture
from client.inspector.store import Store
from client.inspector.views import summary


def test_a_refusal_is_listed_with_its_rule() -> None:
    """A refused request appears in the list as ended, with its status and rule."""
    store = Store(max_entries=10, max_bytes=1 << 20, body_cap=1024)
    Events([Capture(store, [COMMAND_LINE])]).refused_at_edge("GET", "/admin", 401, "basic auth")
    (entry,) = store.entries()
    row = summary(entry)
    assert (row["method"], row["path"], row["status"], row["edge"]) == (
        "GET",
        "/admin",
        401,
        "basic auth",
    )
    assert not row["in_flight"]
