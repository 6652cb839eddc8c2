"""The Prometheus metrics of a server process, against real traffic: requests by
outcome, bytes each way, the edge's latency, live tunnels; served on the main host
with an API key, and without one on LUMINET_METRICS_BIND's address."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import manage

from . import rawclient
from .conftest import Database, Launcher, Layer, Server, Token, last_line
from .localserver import LocalServer, Reply
from .wslocal import WsLocalServer, connect

pytestmark = pytest.mark.timeout(60)

#: Seconds for one metrics read, and for the live-tunnels gauge to follow a client.
CALL_TIMEOUT = 10.0


@dataclass
class Metered:
    server: Server
    key: str
    bind_port: int
    launcher: Launcher

    def read(self, key: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.get(
            f"http://localhost:{self.server.port}/metrics", headers=headers, timeout=CALL_TIMEOUT
        )

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = self.read(self.key)
        assert answer.status_code == 200, answer.text
        return parse(answer.text)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def metered(sqlite_database: Database, home, tmp_path_factory) -> Iterator[Metered]:
    """A server of its own (the metrics count everything its process carried)."""
    key = manage(
        "issue_api_key", "--name", f"e2e-metrics-{uuid.uuid4().hex[:8]}", env=sqlite_database.env
    )
    launcher = Launcher(sqlite_database, Layer("memory", {}), home)
    bind_port = free_port()
    try:
        server = launcher.server(
            name="metrics-server", LUMINET_METRICS_BIND=f"127.0.0.1:{bind_port}"
        )
        yield Metered(server, last_line(key.stdout), bind_port, launcher)
    finally:
        launcher.close()


def test_metrics_need_an_api_key_on_the_main_host(metered: Metered, sqlite_token: Token) -> None:
    for key in (None, "lmk_" + "A" * 40, sqlite_token.value):
        answer = metered.read(key)
        assert answer.status_code == 401, answer.text
        assert "API key" in answer.text
    assert metered.read(metered.key).status_code == 200


def test_requests_bytes_latency_and_tunnels_are_counted(
    metered: Metered,
    local_server: LocalServer,
    ws_local: WsLocalServer,
    sqlite_token: Token,
    uid: str,
) -> None:
    server = metered.server
    client = metered.launcher.client(server, sqlite_token, local_server.port, name="metered-client")
    _, _, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"
    local_server.route(f"/{uid}/page", Reply(body=b"p" * 700))
    before = metered.samples()
    assert before[("luminet_tunnels_live", ())] == 1

    for _ in range(3):
        answer = rawclient.request(server.port, "POST", f"/{uid}/page", host, body=b"u" * 1000)
        assert answer.status == 200
    missing = rawclient.request(server.port, "GET", "/", "no-such-tunnel.localhost")
    assert missing.value("Luminet-Error") == "tunnel-not-found"

    ws_client = metered.launcher.client(server, sqlite_token, ws_local.port, name="metered-ws")
    _, _, ws_subdomain = ws_client.wait_active()
    with connect(server.port, f"{ws_subdomain}.localhost", f"/{uid}/echo") as ws:
        ws.send("hello")
        assert ws.recv() == "hello"

    after = wait_for_websocket(metered)
    assert counted(before, after, "luminet_requests_total", kind="http", outcome="answered") == 3
    assert (
        counted(before, after, "luminet_requests_total", kind="http", outcome="tunnel-not-found")
        == 1
    )
    assert (
        counted(before, after, "luminet_requests_total", kind="websocket", outcome="answered") == 1
    )
    # Bodies only: 3 uploads of 1000 and the message in; 3 pages of 700, our 502 page
    # and the echo out.
    assert counted(before, after, "luminet_bytes_total", direction="in") == 3 * 1000 + 5
    page = len(missing.body)
    assert counted(before, after, "luminet_bytes_total", direction="out") == 3 * 700 + page + 5
    assert counted(before, after, "luminet_edge_latency_seconds_count") == 5
    assert after[("luminet_tunnels_live", ())] == 2

    # Without an API key on the bound address: the same process's figures.
    bound = requests.get(f"http://127.0.0.1:{metered.bind_port}/metrics", timeout=CALL_TIMEOUT)
    assert bound.status_code == 200
    assert parse(bound.text)[("luminet_tunnels_live", ())] == 2

    client.stop()
    ws_client.stop()
    deadline = time.monotonic() + CALL_TIMEOUT
    while metered.samples()[("luminet_tunnels_live", ())] != 0:
        assert time.monotonic() < deadline, "the live-tunnels gauge never went back to 0"
        time.sleep(0.05)


def wait_for_websocket(metered: Metered) -> dict:
    """The samples once the closed WebSocket is counted (its end reaches the server
    after our close returns)."""
    deadline = time.monotonic() + CALL_TIMEOUT
    while True:
        samples = metered.samples()
        key = ("luminet_requests_total", (("kind", "websocket"), ("outcome", "answered")))
        if samples.get(key):
            return samples
        assert time.monotonic() < deadline, "the WebSocket was never counted"
        time.sleep(0.05)


def counted(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)
