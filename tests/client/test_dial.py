"""Opening the tunnel WebSocket: each failure named, and whether it is worth retrying."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from client.dial import dial
from client.errors import ConnectionLost, WrongServer


@pytest.fixture
def answering() -> Iterator[callable]:
    """A one-shot server on 127.0.0.1 that reads a request head and sends ``reply``."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(reply: bytes | None) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                if reply is None:  # never answer: the caller times out and leaves
                    conn.recv(1)
                    return
                conn.sendall(reply)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return listener.getsockname()[1]

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


def _answer(status: str, body: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status.encode(), len(body), body)


def test_a_plain_request_to_a_tls_port_says_use_https(answering) -> None:
    port = answering(_answer("400 Bad Request", b"Client sent an HTTP request to an HTTPS server."))
    with pytest.raises(WrongServer) as wrong:
        dial(f"ws://127.0.0.1:{port}/tunnel", 5)
    assert str(wrong.value) == (
        f"127.0.0.1:{port} expects TLS; use --server https://127.0.0.1:{port}"
    )


def test_a_page_instead_of_an_upgrade_is_not_a_luminet_server(answering) -> None:
    port = answering(_answer("404 Not Found", b"<html>" + b"x" * 5000 + b"</html>"))
    with pytest.raises(WrongServer) as wrong:
        dial(f"ws://127.0.0.1:{port}/tunnel", 5)
    assert "it answered 404 Not Found" in str(wrong.value)
    assert "<html>" not in str(wrong.value)


def test_a_proxy_whose_server_is_down_is_retried(answering) -> None:
    port = answering(_answer("502 Bad Gateway"))
    with pytest.raises(ConnectionLost) as lost:
        dial(f"ws://127.0.0.1:{port}/tunnel", 5)
    assert str(lost.value) == (
        f"ws://127.0.0.1:{port}/tunnel answered 502 Bad Gateway; "
        "is the Luminet server behind the proxy running?"
    )


def test_silence_is_a_timeout_with_a_hint_for_tls(answering) -> None:
    port = answering(None)
    with pytest.raises(ConnectionLost) as lost:
        dial(f"ws://127.0.0.1:{port}/tunnel", 0.5)
    assert str(lost.value) == f"no answer from ws://127.0.0.1:{port}/tunnel within 0.5 s"


def test_nothing_listening_asks_whether_the_server_runs() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionLost) as lost:
        dial(f"ws://127.0.0.1:{port}/tunnel", 5)
    assert str(lost.value) == f"127.0.0.1:{port} refused the connection; is the server running?"
