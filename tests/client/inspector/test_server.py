"""Who the inspector's server answers: loopback Host names, and its own pages' Origin."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from client.inspector.server import (
    InspectorServer,
    InspectorUnavailable,
    loopback_host,
    same_origin,
)
from client.inspector.web import Request, Response, Router


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:4040", "127.0.0.1", "127.0.0.1:4041", "127.1.2.3:80", "[::1]:4040"],
)
def test_loopback_hosts(host: str) -> None:
    assert loopback_host(host)


@pytest.mark.parametrize(
    "host",
    ["", "example.com", "evil.localhost.example.com:4040", "10.0.0.1", "0.0.0.0:4040", "[::2]"],
)
def test_other_hosts(host: str) -> None:
    assert not loopback_host(host)


def test_same_origin_is_http_on_loopback_on_our_port() -> None:
    assert same_origin("http://127.0.0.1:4040", 4040)
    assert same_origin("http://localhost:4040", 4040)
    assert not same_origin("http://localhost:4041", 4040)
    assert not same_origin("https://127.0.0.1:4040", 4040)
    assert not same_origin("http://evil.example:4040", 4040)
    assert not same_origin("null", 4040)
    assert not same_origin("http://localhost:notaport", 4040)


def echo_router() -> Router:
    router = Router()
    router.add("GET", "/ping", lambda request: Response.json({"pong": True}))
    router.add("POST", "/echo", lambda request: Response(200, request.body, "text/plain"))
    return router


@pytest.fixture
def served() -> Iterator[InspectorServer]:
    server = InspectorServer(echo_router(), 0, 1)
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_serves_on_loopback_with_compact_json(served: InspectorServer) -> None:
    with urllib.request.urlopen(f"{served.url}/ping", timeout=10) as response:
        assert response.read() == b'{"pong":true}'
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_paths_and_methods_get_ngrok_errors(served: InspectorServer) -> None:
    for method, path, status in [("GET", "/nope", 404), ("DELETE", "/ping", 405)]:
        request = urllib.request.Request(f"{served.url}{path}", method=method)
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        error = json.loads(raised.value.read())
        assert error["status_code"] == status
        assert set(error) == {"error_code", "status_code", "msg", "details"}


def test_a_taken_port_moves_on_to_the_next() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            server = InspectorServer(echo_router(), port, 20)
        except InspectorUnavailable:
            pytest.skip("the next 19 ports are taken too")
        try:
            assert port < server.port < port + 20
        finally:
            server.close()


def test_no_free_port_is_said() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InspectorUnavailable, match=f"ports {port}-{port} "):
            InspectorServer(echo_router(), port, 1)


def test_a_handler_bug_is_a_500_in_ngroks_shape() -> None:
    router = Router()

    def broken(request: Request) -> Response:
        raise RuntimeError("bug")

    router.add("GET", "/broken", broken)
    response = router.handle(Request("GET", "/broken", {}, {}))
    assert response.status == 500
    assert json.loads(response.body)["msg"] == "internal error"


def test_a_reset_connection_is_not_a_traceback_on_the_console(
    served: InspectorServer, capfd: pytest.CaptureFixture[str]
) -> None:
    """A browser resetting its keep-alive connection prints nothing over the client's lines."""
    before = threading.active_count()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = conn.recv(4096)
        assert b"\r\nServer: Luminet-Inspector\r\n" in head  # no trailing space
        # Close with a reset (linger 0) while the server waits for the next request.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    deadline = time.monotonic() + 10
    while threading.active_count() > before:  # the handler thread has ended
        assert time.monotonic() < deadline, "the connection's thread did not end"
        time.sleep(0.01)
    assert "Traceback" not in capfd.readouterr().err
