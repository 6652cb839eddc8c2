"""LuminetWebSocketProtocol on its own, without a connection: what it does with late sends."""

from __future__ import annotations

import pytest

from tunnelsite.server import LuminetWebSocketProtocol


@pytest.mark.parametrize("state", ["STATE_CLOSING", "STATE_CLOSED"])
@pytest.mark.parametrize("message", [{"text": "late"}, {"bytes": b"late"}])
def test_a_send_after_the_peer_closed_is_dropped(state: str, message: dict) -> None:
    """A message the application sends once the peer has closed is dropped, not raised
    out of the application (the soak of issue 8 met it when a request reached a tunnel
    whose client was closing it; daphne logged "Exception inside application")."""
    protocol = LuminetWebSocketProtocol()
    protocol.state = getattr(protocol, state)
    protocol.client_addr = ["127.0.0.1", 50000]  # daphne logs it with each send
    protocol.handle_reply({"type": "websocket.send", **message})
