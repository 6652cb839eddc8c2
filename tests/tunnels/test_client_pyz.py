"""The one-file client on the main host: the landing page, /luminet.pyz, build_client."""

import html
import os
import re
import stat
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from client import pyz

PUBLIC_URL = "https://tunnel.example.com"


@pytest.fixture
def site(settings) -> Client:
    """A test client for the main host of https://tunnel.example.com."""
    settings.LUMINET_PUBLIC_URL = PUBLIC_URL
    settings.LUMINET_PUBLIC_SCHEME = "https"
    settings.LUMINET_TUNNEL_DOMAIN = "tunnel.example.com"
    settings.LUMINET_PUBLIC_PORT = None
    settings.ALLOWED_HOSTS = ["tunnel.example.com"]
    settings.SECURE_SSL_REDIRECT = False
    return Client(HTTP_HOST="tunnel.example.com")


def shown(content: str, element_id: str) -> str:
    match = re.search(rf'<code id="{element_id}">([^<]*)</code>', content)
    assert match, content
    return html.unescape(match.group(1))


def test_the_landing_page_shows_the_download_and_run_commands(site):
    """The main host's / shows the two commands, for this server's public URL."""
    response = site.get("/")
    assert response.status_code == 200
    content = response.content.decode()
    download, run = pyz.install_commands(PUBLIC_URL)
    assert shown(content, "download-command") == download
    assert shown(content, "run-command") == run
    assert "curl -fsSO https://tunnel.example.com/luminet.pyz" in download
    assert "--server https://tunnel.example.com" in run
    assert "https://NAME.tunnel.example.com" in content
    assert "issue_token" in content


def test_the_landing_page_loads_nothing_from_elsewhere(site):
    """No script, stylesheet, image or font: the page is one self-contained document."""
    content = site.get("/").content.decode().lower()
    for marker in ("<script", "<link", "<img", "src=", "@import", "url("):
        assert marker not in content


def test_the_archive_is_served_with_its_digest_as_etag(site):
    """GET /luminet.pyz answers the built archive as a zip download whose ETag is its
    SHA-256."""
    archive = pyz.build()
    response = site.get("/luminet.pyz")
    assert response.status_code == 200
    assert response.content == archive.data
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="luminet.pyz"'
    assert response["ETag"] == f'"{archive.sha256}"'
    assert response["Cache-Control"] == "no-cache"


def test_an_unchanged_archive_is_not_sent_again(site):
    """If-None-Match with the current ETag gets 304 and no body."""
    etag = site.get("/luminet.pyz")["ETag"]
    response = site.get("/luminet.pyz", HTTP_IF_NONE_MATCH=etag)
    assert (response.status_code, response.content) == (304, b"")


def test_head_gives_the_headers_of_get(site):
    """HEAD /luminet.pyz answers GET's length and ETag."""
    response = site.head("/luminet.pyz")
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(pyz.build().data))
    assert response["ETag"] == site.get("/luminet.pyz")["ETag"]


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_the_archive_and_the_page_are_read_only(site, method):
    """Anything but GET and HEAD gets 405."""
    for path in ("/luminet.pyz", "/"):
        assert getattr(site, method)(path).status_code == 405


def test_the_landing_page_follows_the_public_url(site):
    """A plain-http server on a port gets commands with that scheme and port."""
    with override_settings(
        LUMINET_PUBLIC_URL="http://localhost:8000",
        LUMINET_PUBLIC_SCHEME="http",
        LUMINET_TUNNEL_DOMAIN="localhost",
        LUMINET_PUBLIC_PORT=8000,
        ALLOWED_HOSTS=["localhost"],
    ):
        content = Client(HTTP_HOST="localhost:8000").get("/").content.decode()
    assert shown(content, "download-command") == "curl -fsSO http://localhost:8000/luminet.pyz"
    assert "http://NAME.localhost:8000" in content


def test_build_client_writes_the_archive_the_server_serves(tmp_path):
    """build_client writes the same bytes as the server's build, executable, and says their
    size and SHA-256."""
    output = tmp_path / "out.pyz"
    out = StringIO()
    call_command("build_client", "--output", str(output), stdout=out)
    archive = pyz.build()
    assert output.read_bytes() == archive.data
    assert os.stat(output).st_mode & stat.S_IXUSR
    assert f"{len(archive.data)} bytes, sha256 {archive.sha256}" in out.getvalue()
