"""Live tunnels on two server processes sharing Redis: the list on one shows the figures
of a tunnel the other holds, a disconnect from its admin page or its admin API reaches
that tunnel, and a disconnect frees its subdomain at once."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import pytest
import requests

from harness import manage

from . import rawclient
from .conftest import Launcher, Server, last_line
from .localserver import LocalServer, Reply
from .test_operator import live_row, staff_session, stderr_of

pytestmark = pytest.mark.timeout(90)

#: Seconds for another process's figures to reach the list (heartbeats of 0.5 s here).
LIST_DEADLINE = 15.0


@dataclass
class Cluster:
    launcher: Launcher
    server_a: Server
    server_b: Server

    @property
    def base_b(self) -> str:
        return f"http://localhost:{self.server_b.port}"


@pytest.fixture
def cluster(redis_launcher: Launcher) -> Cluster:
    server_a = redis_launcher.server(name="live-a", LUMINET_HEARTBEAT_INTERVAL="0.5")
    server_b = redis_launcher.server(name="live-b", LUMINET_HEARTBEAT_INTERVAL="0.5")
    return Cluster(redis_launcher, server_a, server_b)


def test_the_list_shows_the_bytes_of_a_tunnel_held_by_the_other_process(
    cluster: Cluster, local_server: LocalServer, uid: str
) -> None:
    token = cluster.launcher.database.issue_token("e2e-live")
    client = cluster.launcher.client(cluster.server_a, token, local_server.port, name="on-a")
    _, _, subdomain = client.wait_active()
    local_server.route(f"/{uid}/live", Reply(body=b"b" * 12345))
    for _ in range(3):
        answer = rawclient.request(
            cluster.server_b.port, "POST", f"/{uid}/live", f"{subdomain}.localhost", body=b"a" * 100
        )
        assert answer.status == 200

    session = staff_session(cluster.launcher.database, cluster.base_b)
    index = session.get(f"{cluster.base_b}/admin/", timeout=10)
    assert 'href="/admin/live-tunnels/"' in index.text
    deadline = time.monotonic() + LIST_DEADLINE
    row = live_row(session, cluster.base_b, subdomain)
    while (row is None or row[4] != "3") and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the page: the figures arrive with a heartbeat
        row = live_row(session, cluster.base_b, subdomain)
    assert row is not None, cluster.launcher.describe()
    assert (row[1], row[4:8]) == (token.name, ["3", "300", str(3 * 12345), "none"])


def test_a_disconnected_tunnels_subdomain_is_free_at_once_for_another_token(
    cluster: Cluster, local_server: LocalServer
) -> None:
    token = cluster.launcher.database.issue_token("e2e-live-kick")
    client = cluster.launcher.client(cluster.server_a, token, local_server.port, name="kicked")
    _, _, subdomain = client.wait_active()
    session = staff_session(cluster.launcher.database, cluster.base_b)
    answer = session.post(
        f"{cluster.base_b}/admin/live-tunnels/{subdomain}/disconnect",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=10,
    )
    assert answer.status_code == 200 and "Disconnected" in answer.text
    assert client.wait_exit(20) == 1, client.describe()
    # Well within the grace period (60 s here) that a dropped tunnel's name is held for.
    other = cluster.launcher.database.issue_token("e2e-live-next")
    taker = cluster.launcher.client(
        cluster.server_b, other, local_server.port, name="taker", args=["--subdomain", subdomain]
    )
    assert taker.wait_active()[2] == subdomain, taker.describe()


def test_the_admin_api_lists_and_disconnects_a_tunnel_held_by_the_other_process(
    cluster: Cluster, local_server: LocalServer, uid: str
) -> None:
    database = cluster.launcher.database
    issued = manage("issue_api_key", "--name", f"live-{secrets.token_hex(3)}", env=database.env)
    key = last_line(issued.stdout)
    headers = {"Authorization": f"Bearer {key}"}
    token = database.issue_token("e2e-live-api")
    client = cluster.launcher.client(cluster.server_a, token, local_server.port, name="api-kicked")
    _, _, subdomain = client.wait_active()
    local_server.route(f"/{uid}/api", Reply(body=b"x" * 777))
    answer = rawclient.request(
        cluster.server_b.port, "GET", f"/{uid}/api", f"{subdomain}.localhost"
    )
    assert answer.status == 200

    def listed() -> dict[str, object] | None:
        reply = requests.get(f"{cluster.base_b}/api/tunnels", headers=headers, timeout=10)
        assert reply.status_code == 200, reply.text
        return next((t for t in reply.json() if t["subdomain"] == subdomain), None)

    deadline = time.monotonic() + LIST_DEADLINE
    entry = listed()
    while (entry is None or entry["requests"] != 1) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the API: the figures arrive with a heartbeat
        entry = listed()
    assert entry is not None, cluster.launcher.describe()
    assert entry["token_name"] == token.name and isinstance(entry["token_id"], int)
    assert (entry["requests"], entry["bytes_out"], entry["rules"]) == (1, 777, [])
    assert entry["client"].startswith("127.0.0.1:") and entry["since"].endswith("Z")

    url = f"{cluster.base_b}/api/tunnels/{subdomain}/disconnect"
    assert requests.post(url, timeout=10).status_code == 401  # no key, no disconnect
    assert client.running(), "a refused call must leave the tunnel up"
    kicked = requests.post(url, headers=headers, timeout=10)
    assert kicked.status_code == 204, kicked.text
    assert client.wait_exit(20) == 1, client.describe()
    assert "disconnected by the server's operator" in stderr_of(client)
    assert listed() is None  # withdrawn as the session ends, not left to expire
    again = requests.post(url, headers=headers, timeout=10)
    assert again.status_code == 404 and "no live tunnel" in again.json()["detail"]
