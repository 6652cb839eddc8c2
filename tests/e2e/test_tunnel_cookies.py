"""Issue 11, cookie safety, on a refused WebSocket handshake (HTTP: test_edge_rules.py).

The tunnels' domain here is ``localhost`` (the Launcher's LUMINET_PUBLIC_URL).
"""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from .conftest import WsTunnel
from .wslocal import HttpReply, connect

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("s=1; Domain=localhost; Path=/", "s=1; Path=/"),
        ("s=1; Domain=.other.localhost", "s=1"),
        ("s=1; Domain=localhost; Domain=", "s=1"),
        ("s=1; Domain=example.test; Path=/", "s=1; Domain=example.test; Path=/"),
    ],
    ids=["tunnel-domain", "sibling", "empty-last", "unrelated"],
)
def test_a_refused_handshake_sets_host_only_cookies(
    ws_tunnel: WsTunnel, uid: str, sent: str, kept: str
) -> None:
    """A local refusal of a WebSocket handshake is held to the tunnels' cookie rule."""
    ws_tunnel.local.route(f"/{uid}/ws", HttpReply(403, b"no", headers=(("Set-Cookie", sent),)))
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_tunnel.port, ws_tunnel.host, f"/{uid}/ws")
    response = refused.value.response
    assert response.status_code == 403
    assert response.headers.get_all("Set-Cookie") == [kept]
