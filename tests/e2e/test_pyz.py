"""The one-file client as a teammate gets it: downloaded from the main host, started by a
bare ``python3`` in an empty virtualenv (issue 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from client.pyz import ARCHIVE_NAME
from harness import Client, clean_environ

from . import rawclient
from .conftest import Launcher, Token
from .localserver import LocalServer, Reply

pytestmark = pytest.mark.timeout(90)

#: Every byte value, in a body longer than one flow-control chunk (64 KiB).
BODY = bytes(range(256)) * 1024


@pytest.fixture(scope="module")
def empty_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a virtualenv with nothing installed, not even pip."""
    venv = tmp_path_factory.mktemp("empty") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    python = venv / "bin" / "python"
    # The test shows something only if websocket-client (and our client) are out of reach.
    for module in ("websocket", "client"):
        done = subprocess.run(
            [python, "-c", f"import {module}"],
            cwd=venv,
            env=clean_environ({}),
            capture_output=True,
            timeout=30,
        )
        assert done.returncode != 0, f"the empty virtualenv imports {module}"
    return python


@pytest.mark.parametrize("layer", ["memory"], indirect=True)
def test_the_downloaded_client_serves_requests_from_an_empty_virtualenv(
    launcher: Launcher,
    dev_token: Token,
    local_server: LocalServer,
    empty_python: Path,
    home: Path,
    tmp_path: Path,
    uid: str,
) -> None:
    """GET /luminet.pyz from the main host, `python luminet.pyz http PORT` with nothing
    installed, and requests through the tunnel arrive and come back byte for byte."""
    server = launcher.server(name="pyz-server")
    download = rawclient.request(server.port, "GET", f"/{ARCHIVE_NAME}", "localhost")
    assert download.status == 200, launcher.describe()
    assert download.value("Content-Type") == "application/zip"
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    (laptop / ARCHIVE_NAME).write_bytes(download.body)

    client = Client(
        command=[str(empty_python), ARCHIVE_NAME, "http", str(local_server.port)],
        cwd=laptop,
        server_url=f"http://127.0.0.1:{server.port}",
        local_port=local_server.port,
        token=dev_token.value,
        home=home,
        name="pyz-client",
    )
    try:
        _, _, subdomain = client.wait_active()
        host = f"{subdomain}.localhost"
        local_server.route(f"/{uid}/download", Reply(body=BODY))
        response = rawclient.request(server.port, "GET", f"/{uid}/download", host)
        assert (response.status, response.body) == (200, BODY), client.describe()

        upload = rawclient.request(server.port, "POST", f"/{uid}/upload", host, body=BODY)
        assert (upload.status, upload.body) == (200, b"ok"), client.describe()
        assert local_server.only(f"/{uid}/upload").body == BODY
    finally:
        client.stop()
