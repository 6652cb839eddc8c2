"""The admin in a real browser: styled by the server's own static files, and a token
issued through it shown once, a reload issuing nothing.

Headless Debian Chromium, driven by Playwright, as in ``test_browser.py``. With
``LUMINET_SCREENSHOT_DIR`` set, the token list's picture is saved there
(``docs/images/admin-tokens.png`` for the README is made so).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness import Server, manage

from .conftest import Database, Launcher, Layer, migrated_database

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.timeout(90)

#: Milliseconds Playwright waits for a page or an element.
WAIT_MS = 15_000
PASSWORD = "browser-" + secrets.token_hex(8)
USERNAME = "operator"
#: The admin header's background (Django's --header-bg, #417690) once base.css loaded;
#: unstyled, it is transparent.
HEADER_BACKGROUND = "rgb(65, 118, 144)"


@pytest.fixture
def admin_server(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Server]:
    """A server on a database of its own, with a superuser and a few tokens to list."""
    database: Database = migrated_database(tmp_path_factory)
    env = {**database.env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    manage("createsuperuser", "--noinput", "--username", USERNAME, "--email", "a@x.test", env=env)
    for name in ("ci-runner", "alice-laptop", "staging-webhooks"):
        database.issue_token(name)
    launcher = Launcher(database, Layer("memory", {}), tmp_path)
    try:
        yield launcher.server(name="admin-browser-server")
    finally:
        launcher.close()


def log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/tokens/token/", timeout=WAIT_MS)
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/tokens/token/$"), timeout=WAIT_MS)


def token_rows(page: Page) -> int:
    return page.locator("#result_list tbody tr").count()


def test_the_token_list_is_styled_and_an_issued_token_shows_once(
    admin_server: Server, browser: Browser, tmp_path: Path
) -> None:
    """Logged in, the token list has the admin's stylesheet applied (a computed style);
    adding a token leads to a page with its plaintext, which a reload does not show
    again, and after which the list holds one token more, not two."""
    from playwright.sync_api import expect

    base = f"http://localhost:{admin_server.port}"
    page = browser.new_page(viewport={"width": 1280, "height": 640})
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    try:
        log_in(page, base)
        header = page.locator("#header")
        expect(header).to_be_visible(timeout=WAIT_MS)
        background = header.evaluate("element => getComputedStyle(element).backgroundColor")
        assert background == HEADER_BACKGROUND
        assert token_rows(page) == 3
        shots = Path(os.environ.get("LUMINET_SCREENSHOT_DIR") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "admin-tokens.png"))

        page.goto(f"{base}/admin/tokens/token/add/", timeout=WAIT_MS)
        page.fill("#id_name", "from-the-browser")
        page.click("input[name=_save]")
        page.wait_for_url(re.compile(r"/admin/tokens/token/\d+/issued/$"), timeout=WAIT_MS)
        plaintext = page.locator("#issued-token").inner_text()
        assert plaintext.startswith("lmn_")
        assert plaintext in page.locator("#run-command").inner_text()

        page.reload(timeout=WAIT_MS)
        expect(page.locator("#already-shown")).to_be_visible(timeout=WAIT_MS)
        assert plaintext not in page.content()
        page.goto(f"{base}/admin/tokens/token/", timeout=WAIT_MS)
        assert token_rows(page) == 4
        # Every stylesheet, script and image on the way loaded.
        assert failed == []
    finally:
        page.close()
