"""One real browser: a page served through the tunnel opens a WebSocket back through it.

Headless Chromium from the system's packages (Debian: ``apt-get install chromium``),
driven by Playwright; ``playwright install`` is never needed. Chromium resolves
``*.localhost`` to loopback itself, so the page is loaded by its tunnel URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .conftest import WsTunnel
from .wslocal import HttpReply

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.timeout(60)

#: Milliseconds Playwright waits for the page and for each text to appear.
WAIT_MS = 15_000

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>Luminet browser test</title>
<p>From the local server: <span id="greeting">waiting</span></p>
<p>Echoed back: <span id="echo">waiting</span></p>
<script>
  const ws = new WebSocket("ws://" + location.host + location.pathname + "ws");
  let first = true;
  ws.onmessage = (event) => {
    document.getElementById(first ? "greeting" : "echo").textContent = event.data;
    if (first) ws.send("the browser says hi");
    first = false;
  };
  ws.onclose = (event) => {
    document.getElementById("greeting").dataset.closed = String(event.code);
  };
</script>
"""


def test_page_through_tunnel_opens_websocket_back(
    ws_tunnel: WsTunnel, browser: Browser, uid: str
) -> None:
    """A page from the local server shows a message that came over its WebSocket."""
    from playwright.sync_api import expect

    local = ws_tunnel.local
    greeting = f"hello browser {uid}"
    local.route(f"/{uid}/", HttpReply(200, PAGE.encode(), "text/html; charset=utf-8"))
    local.greet(f"/{uid}/ws", greeting)
    public = f"{ws_tunnel.host}:{ws_tunnel.port}"

    page = browser.new_page()
    try:
        response = page.goto(f"http://{public}/{uid}/", timeout=WAIT_MS)
        assert response is not None and response.status == 200
        expect(page.locator("#greeting")).to_have_text(greeting, timeout=WAIT_MS)
        expect(page.locator("#echo")).to_have_text("the browser says hi", timeout=WAIT_MS)
    finally:
        page.close()

    served = local.wait_seen(lambda s: s.path == f"/{uid}/")
    upgraded = local.wait_seen(lambda s: s.path == f"/{uid}/ws")
    assert not served.upgraded and upgraded.upgraded
    assert upgraded.values("X-Forwarded-Host") == [public]
    assert upgraded.values("Origin") == [f"http://{public}"]
