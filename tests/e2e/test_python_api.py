"""``client.tunnel()`` and the pytest fixture: tunnels opened in-process, against a real server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

import client
from client.errors import AuthFailed, NameRefused

from . import rawclient
from .conftest import Token, Tunnel

pytestmark = pytest.mark.timeout(60)


def test_a_tunnel_opened_from_python_serves_and_closes(
    tunnel: Tunnel, dev_token: Token, monkeypatch: pytest.MonkeyPatch, tmp_path, uid: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with client.tunnel(
        port=tunnel.local.port, host="127.0.0.1", server=tunnel.server.ws_url, token=dev_token.value
    ) as opened:
        host = opened.public_url.removeprefix("http://")
        assert opened.public_url == f"http://{opened.subdomain}.localhost"
        response = rawclient.request(tunnel.port, "GET", f"/{uid}/api", host)
        assert (response.status, response.body) == (200, b"ok")
    deadline = time.monotonic() + 10
    while True:  # the server takes the close a moment after close() returns
        gone = rawclient.request(tunnel.port, "GET", f"/{uid}/api", host)
        if gone.value("luminet-error") != "tunnel-closed" or time.monotonic() > deadline:
            break
    assert (gone.status, gone.value("luminet-error")) == (502, "tunnel-not-found")


def test_refusals_are_raised_in_the_callers_thread(
    tunnel: Tunnel, dev_token: Token, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(AuthFailed, match="invalid token"):
        client.tunnel(port=tunnel.local.port, server=tunnel.server.ws_url, token="lmn_" + "x" * 43)
    with pytest.raises(NameRefused, match="'admin' is not available"):
        client.tunnel(
            port=tunnel.local.port,
            server=tunnel.server.ws_url,
            token=dev_token.value,
            subdomain="admin",
        )


# -- an example: testing a webhook handler end to end with the fixture -----------


class _Hooks(BaseHTTPRequestHandler):
    """The application under test: a webhook endpoint that records what it received."""

    received: ClassVar[list[dict]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        type(self).arrived.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook_app() -> Iterator[ThreadingHTTPServer]:
    _Hooks.received, _Hooks.arrived = [], threading.Event()
    app = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    thread = threading.Thread(target=app.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield app
    finally:
        app.shutdown()
        app.server_close()
        thread.join(10)


def test_example_webhook_delivered_through_the_tunnel(
    luminet_tunnel: Callable[..., client.OpenTunnel],
    webhook_app: ThreadingHTTPServer,
    tunnel: Tunnel,
    dev_token: Token,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
) -> None:
    """What a project's own test looks like: TUNNEL_SERVER and TUNNEL_TOKEN come from its
    CI; here, from the test's server. The 'provider' posts to the public URL."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TUNNEL_SERVER", tunnel.server.ws_url)
    monkeypatch.setenv("TUNNEL_TOKEN", dev_token.value)
    exposed = luminet_tunnel(webhook_app.server_address[1], host="127.0.0.1")
    payload = json.dumps({"event": "push", "ref": "refs/heads/main"}).encode()
    host = exposed.public_url.removeprefix("http://")
    response = rawclient.request(
        tunnel.port, "POST", "/hooks/github", host, [("Content-Type", "application/json")], payload
    )
    assert response.status == 204
    assert _Hooks.arrived.wait(10)
    assert _Hooks.received == [{"event": "push", "ref": "refs/heads/main"}]
