"""The inspector's page in a real browser: live list, detail, replay with an edited header.

Headless Chromium from Debian's packages, driven by Playwright (``browser`` in
conftest). The page is served by a running client; the requests go through the
tunnel from this test, and the edited replay is checked where it lands: at the
local server. With ``LUMINET_SCREENSHOT_DIR`` set, the page's picture is saved
there (``docs/images/inspector.png`` for the README is made so).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .inspected import Inspected
from .localserver import Reply

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.timeout(90)

#: Milliseconds Playwright waits for each thing to appear.
WAIT_MS = 15_000
#: A tiny PNG (1x1, blue), for the detail view's image.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
    "53de0000000c4944415408d7636068f80f0001830100d1c5c1b10000000049454e44ae426082"
)


def test_a_request_appears_live_and_an_edited_replay_reaches_the_local_server(
    inspected: Inspected, browser: Browser, uid: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    local = inspected.local
    path = f"/{uid}/orders"
    local.route(
        path,
        Reply(201, "Created", (("Content-Type", "application/json"),), b'{"id":42,"ok":true}'),
    )
    local.route(f"/{uid}/pixel.png", Reply(headers=(("Content-Type", "image/png"),), body=PIXEL))
    local.route(f"/{uid}/missing", Reply(404, "Not Found", body=b"no such page"))
    body = json.dumps({"item": "book", "quantity": 2}).encode()

    page = browser.new_page(viewport={"width": 1360, "height": 820})
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(inspected.api + "/", timeout=WAIT_MS)
        expect(page.locator("#live")).not_to_have_class("off", timeout=WAIT_MS)

        # Arrives while the page is open: it shows up without a reload.
        inspected.through_tunnel("GET", f"/{uid}/pixel.png")
        inspected.through_tunnel("GET", f"/{uid}/missing")
        inspected.through_tunnel(
            "POST", path, body, [("Content-Type", "application/json"), ("X-Mode", "original")]
        )
        original = page.locator("#entries tbody tr", has_text=path)
        expect(original).to_have_count(1, timeout=WAIT_MS)
        expect(original).to_contain_text("201")

        # The filters: by text, by status class, by method.
        page.fill("#filter-text", "missing")
        expect(original).to_have_count(0, timeout=WAIT_MS)
        page.fill("#filter-text", "")
        page.select_option("#filter-status", "4")
        expect(original).to_have_count(0, timeout=WAIT_MS)
        expect(page.locator("#entries tbody tr", has_text=f"/{uid}/missing")).to_have_count(1)
        page.select_option("#filter-status", "")
        page.select_option("#filter-method", "POST")
        expect(page.locator("#entries tbody tr", has_text=f"/{uid}/pixel.png")).to_have_count(0)
        page.select_option("#filter-method", "")

        # The image is shown as one.
        page.locator("#entries tbody tr", has_text=f"/{uid}/pixel.png").click()
        expect(page.locator("#detail img.body")).to_be_visible(timeout=WAIT_MS)

        # The detail: headers and the JSON bodies, pretty-printed.
        original.click()
        detail = page.locator("#detail")
        expect(detail).to_contain_text("x-mode", timeout=WAIT_MS)
        expect(detail.locator("pre.json").first).to_contain_text('"quantity": 2')
        expect(detail.locator("pre.json").last).to_contain_text('"ok": true')
        page.click("#copy-curl")
        expect(page.locator("#curl")).to_contain_text(f"{inspected.url}{path}")

        # Replay with an edited header.
        page.click("#edit-replay")
        headers = page.locator("#edit-form textarea[name=headers]")
        expect(headers).to_be_visible()
        edited = headers.input_value().replace("x-mode: original", "x-mode: edited")
        assert edited != headers.input_value()
        headers.fill(edited)
        page.click("#edit-send")

        replayed = local.wait_count(lambda r: r.path == path, 2)[-1]
        assert replayed.values("x-mode") == ["edited"]
        assert (replayed.method, replayed.body) == ("POST", body)

        # The new exchange is listed, marked, and shown.
        replay_row = page.locator("#entries tbody tr", has_text=path).filter(
            has=page.locator(".badge")
        )
        expect(replay_row).to_have_count(1, timeout=WAIT_MS)
        expect(detail.locator(".badge")).to_contain_text("replay of", timeout=WAIT_MS)
        expect(detail.locator("#detail-status")).to_have_text("201 Created", timeout=WAIT_MS)
        expect(detail).to_contain_text("edited")

        shots = Path(os.environ.get("LUMINET_SCREENSHOT_DIR") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "inspector.png"))
        # No script error, no refused style, no missing favicon on the way.
        assert errors == []
    finally:
        page.close()
