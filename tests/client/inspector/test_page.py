"""The page is self-contained: no build step, and nothing fetched from the internet."""

from __future__ import annotations

import re

import pytest

from client.inspector.routes import PAGE_FILES, PAGE_POLICY, Page


@pytest.mark.parametrize("name", sorted(PAGE_FILES))
def test_no_file_of_the_page_names_another_site(name: str) -> None:
    text = Page.load().files[name].decode()
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
    assert "@import" not in text


def test_the_page_loads_only_its_own_script_and_style() -> None:
    html = Page.load().files["index.html"].decode()
    assert re.findall(r'src="([^"]+)"', html) == ["/static/app.js"]
    assert re.findall(r'href="([^"]+)"', html) == ["/static/app.css", "/inspector/har"]
    assert "<script>" not in html and "style=" not in html  # the policy allows neither inline
    assert "default-src 'none'" in PAGE_POLICY and "connect-src 'self'" in PAGE_POLICY


def test_the_script_writes_text_never_html() -> None:
    script = Page.load().files["app.js"].decode()
    assert "innerHTML" not in script and "outerHTML" not in script
    assert "insertAdjacentHTML" not in script and "document.write" not in script
