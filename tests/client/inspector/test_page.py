"""The page is self-contained: no build step, and nothing fetched from the internet."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from client import pyz
from client.inspector.routes import PAGE_FILES, PAGE_POLICY, Page


@pytest.mark.parametrize("name", sorted(PAGE_FILES))
def test_no_file_of_the_page_names_another_site(name: str) -> None:
    text = Page.load().files[name].decode()
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
    assert "@import" not in text


def test_the_page_loads_only_its_own_script_and_style() -> None:
    html = Page.load().files["index.html"].decode()
    assert re.findall(r'src="([^"]+)"', html) == ["/static/app.js"]
    # "data:," is an empty favicon: the browser asks the server for none.
    assert re.findall(r'href="([^"]+)"', html) == ["data:,", "/static/app.css", "/inspector/har"]
    assert "<script>" not in html and "style=" not in html  # the policy allows neither inline
    assert "default-src 'none'" in PAGE_POLICY and "connect-src 'self'" in PAGE_POLICY


def test_the_script_writes_text_never_html() -> None:
    script = Page.load().files["app.js"].decode()
    assert "innerHTML" not in script and "outerHTML" not in script
    assert "insertAdjacentHTML" not in script and "document.write" not in script


def test_the_one_file_client_serves_the_page_from_inside_its_zip(tmp_path: Path) -> None:
    """luminet.pyz carries the page, and the inspector reads it from the archive."""
    archive = tmp_path / "luminet.pyz"
    archive.write_bytes(pyz.build().data)
    script = (
        "import sys; sys.path[:0] = [sys.argv[1]]\n"
        "from client.inspector.routes import Page\n"
        "import client; assert client.__file__.startswith(sys.argv[1]), client.__file__\n"
        "print(sorted((name, len(data)) for name, data in Page.load().files.items()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, str(archive)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = sorted((name, len(data)) for name, data in Page.load().files.items())
    assert done.stdout.strip() == str(expected)
