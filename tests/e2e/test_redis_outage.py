"""Redis outages (issue 12), on production's pair (Redis and PostgreSQL): a Redis restart,
even empty, is survived without restarting daphne or the client; while Redis is
unreachable public requests that need it get a fast 503, those that do not are
served, and the admin answers; nothing crashes and nothing leaks; a server started
while Redis is down serves the admin, and tunnels once Redis is back.

Each test runs a ``redis-server`` of its own (``harness.PrivateRedis``) and kills it:
never the shared one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from harness import PrivateRedis, Server, manage, procfs

from . import rawclient
from .conftest import Database, Launcher, Layer, Token
from .localserver import LocalServer, Reply
from .test_operator import staff_session

pytestmark = pytest.mark.timeout(120)

#: The servers' heartbeat: the bound within which a tunnel serves again.
HEARTBEAT = 2.0
#: Slack on that bound: a poll's own round trip, and the tunnel's channel-layer
#: receive reconnecting (redis-py retries within a second).
MARGIN = 1.0
#: A public request while Redis is down is answered at once, well under a heartbeat.
FAST = 0.5
#: A public request while Redis hangs waits for the registry's command timeout (2 s,
#: tunnels.redisclient), then gets its 503: never a hang.
FROZEN = 2.5
#: Seconds Redis stays down: long enough for heartbeats to fail and the
#: channel-layer receive to give up and retry several times.
OUTAGE = 3 * HEARTBEAT
#: File descriptors and asyncio tasks a server may hold above its level before the
#: outage, once Redis is back (measured: none more).
FD_SLACK = 2
TASK_SLACK = 2
#: Seconds for them to come back to that level.
SETTLE = 10.0
STATS_RE = re.compile(r"stats: tasks=(\d+) connections=(\d+)")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, not started: the test starts and kills it."""
    redis = PrivateRedis(tmp_path)
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
def launcher(
    postgres_database: Database, private_redis: PrivateRedis, home: Path
) -> Iterator[Launcher]:
    launcher = Launcher(
        postgres_database, Layer("private-redis", {"REDIS_URL": private_redis.url}), home
    )
    try:
        yield launcher
    finally:
        launcher.close()


def start_server(launcher: Launcher, name: str = "server") -> Server:
    return launcher.server(
        name=name,
        LUMINET_HEARTBEAT_INTERVAL=str(HEARTBEAT),
        # A stats line every 0.2 s: the asyncio tasks of the process.
        LUMINET_STATS_INTERVAL="0.2",
        LUMINET_LOG_LEVEL="INFO",
    )


def public_get(server: Server, host: str, path: str = "/") -> tuple[rawclient.Response, float]:
    started = time.monotonic()
    response = rawclient.request(server.port, "GET", path, host, timeout=30)
    return response, time.monotonic() - started


def assert_fast_unavailable(server: Server, host: str) -> None:
    response, took = public_get(server, host)
    assert (response.status, response.value("Luminet-Error")) == (503, "unavailable"), response
    assert took < FAST, f"a 503 took {took:.2f} s"


def tasks(server: Server, after: int = 0) -> int:
    """The asyncio tasks of the server's latest stats line printed after line ``after``."""
    _, match = server.stdout.wait_for(STATS_RE.pattern, 5, after)
    for line in reversed(server.stdout.lines[after:]):
        if found := STATS_RE.search(line):
            return int(found[1])
    return int(match[1])


def settles(measure, level: int, slack: int) -> int:
    """``measure()`` once it is within ``slack`` of ``level`` (SETTLE seconds at most)."""
    deadline = time.monotonic() + SETTLE
    value = measure()
    while value > level + slack and time.monotonic() < deadline:
        time.sleep(0.2)  # polling /proc and the stats lines
        value = measure()
    return value


def test_a_redis_restart_is_survived_within_one_heartbeat(
    launcher: Launcher,
    private_redis: PrivateRedis,
    postgres_token: Token,
    postgres_database: Database,
    local_server: LocalServer,
    uid: str,
) -> None:
    """Redis killed under a tunnel held by process A, and started again empty: meanwhile
    requests entering B (which need Redis) get a 503 in under FAST, those entering A are
    served (local delivery needs no Redis), and B's admin answers; the tunnel never
    drops, serves through B again within a heartbeat of Redis's return, and neither
    process keeps more file descriptors or asyncio tasks than before."""
    private_redis.start()
    holder, other = start_server(launcher, "server-a"), start_server(launcher, "server-b")
    client = launcher.client(holder, postgres_token, local_server.port)
    _, _, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"
    path = f"/{uid}/ok"
    local_server.route(path, Reply(body=b"ok"))
    base = f"http://localhost:{other.port}"
    staff = staff_session(postgres_database, base)
    key = manage("issue_api_key", "--name", f"outage-{uid}", env=postgres_database.env)
    api = {"Authorization": f"Bearer {key.stdout.split()[-1]}"}
    for _ in range(5):  # every pool and lazy import in place before the levels are read
        for server in (holder, other):
            assert public_get(server, host, path)[0].status == 200
    assert staff.get(f"{base}/admin/live-tunnels/", timeout=10).status_code == 200
    levels = {server: Levels.of(server) for server in (holder, other)}

    private_redis.stop()
    down_until = time.monotonic() + OUTAGE
    while time.monotonic() < down_until:
        assert_fast_unavailable(other, host)
        response, took = public_get(holder, host, path)
        assert (response.status, response.body) == (200, b"ok"), response
        assert took < FAST, f"a request served locally took {took:.2f} s"
    page = staff.get(f"{base}/admin/live-tunnels/", timeout=10)
    assert page.status_code == 503 and "Redis cannot be reached" in page.text
    listed = requests.get(f"{base}/api/tunnels", headers=api, timeout=10)
    assert listed.status_code == 503 and "Redis" in listed.json()["detail"]
    assert staff.get(f"{base}/admin/tokens/token/", timeout=10).status_code == 200
    assert requests.get(f"{base}/api/tokens", headers=api, timeout=10).status_code == 200
    assert requests.get(f"{base}/health", timeout=10).json() == {"status": "ok"}

    private_redis.start()
    back = time.monotonic()
    response, _ = public_get(other, host, path)
    while response.status != 200:
        # Until the tunnel's heartbeat writes its entry back: not found, at once.
        assert response.value("Luminet-Error") in {"tunnel-not-found", "unavailable"}, response
        assert time.monotonic() - back < HEARTBEAT + MARGIN, "not serving again in time"
        time.sleep(0.05)  # polling the public URL
        response, _ = public_get(other, host, path)
    assert time.monotonic() - back < HEARTBEAT + MARGIN
    assert response.body == b"ok"
    assert client.events("tunnel_down") == [], "the client's tunnel dropped"
    assert client.running()
    for server, level in levels.items():
        assert server.running()
        assert "Traceback" not in server.describe(), server.describe()
        level.assert_regained(server)
    assert staff.get(f"{base}/admin/live-tunnels/", timeout=10).status_code == 200
    assert requests.get(f"{base}/api/tunnels", headers=api, timeout=10).status_code == 200


@dataclass(frozen=True)
class Levels:
    """A server's open file descriptors and asyncio tasks, to compare after an outage."""

    fds: int
    tasks: int

    @classmethod
    def of(cls, server: Server) -> Levels:
        return cls(procfs.open_fds(server.pid), tasks(server, len(server.stdout.lines)))

    def assert_regained(self, server: Server) -> None:
        """Within SETTLE seconds, the server is back within the slack of these levels."""
        fds = settles(lambda: procfs.open_fds(server.pid), self.fds, FD_SLACK)
        assert fds <= self.fds + FD_SLACK, f"{server.name}: {self.fds} fds before, {fds} after"
        count = settles(lambda: tasks(server, len(server.stdout.lines)), self.tasks, TASK_SLACK)
        assert count <= self.tasks + TASK_SLACK, f"{server.name}: {self.tasks} tasks, {count} after"


def test_a_server_started_while_redis_is_down_serves_the_admin_then_tunnels(
    launcher: Launcher,
    private_redis: PrivateRedis,
    postgres_token: Token,
    local_server: LocalServer,
    uid: str,
) -> None:
    """With Redis down the server starts and serves its health check and admin, public
    requests get a fast 503, and a client keeps trying; once Redis is up its tunnel
    connects and serves."""
    server = start_server(launcher)
    base = f"http://localhost:{server.port}"
    assert requests.get(f"{base}/health", timeout=10).status_code == 200
    assert requests.get(f"{base}/admin/login/", timeout=10).status_code == 200
    assert_fast_unavailable(server, f"x{uid}.localhost")
    client = launcher.client(server, postgres_token, local_server.port)
    client.wait_event("connect_failed", timeout=20)
    assert client.running()
    private_redis.start()
    _, _, subdomain = client.wait_active(timeout=40)
    local_server.route(f"/{uid}/ok", Reply(body=b"ok"))
    response, _ = public_get(server, f"{subdomain}.localhost", f"/{uid}/ok")
    assert (response.status, response.body) == (200, b"ok")
    assert "Traceback" not in server.describe(), server.describe()


def test_a_frozen_redis_costs_a_bounded_wait_and_nothing_after(
    launcher: Launcher,
    private_redis: PrivateRedis,
    postgres_token: Token,
    local_server: LocalServer,
    uid: str,
) -> None:
    """A Redis that accepts connections but answers nothing (SIGSTOP: a hung server, a
    network dropping packets): requests entering the other process get a 503 within
    FROZEN seconds (10 before: redis-py's socket timeout), never a hang; those entering
    the holding process are served; once Redis answers again, the tunnel serves
    through both."""
    private_redis.start()
    holder, other = start_server(launcher, "server-a"), start_server(launcher, "server-b")
    client = launcher.client(holder, postgres_token, local_server.port)
    _, _, subdomain = client.wait_active()
    host, path = f"{subdomain}.localhost", f"/{uid}/ok"
    local_server.route(path, Reply(body=b"ok"))
    for server in (holder, other):
        assert public_get(server, host, path)[0].status == 200

    private_redis.freeze()
    try:
        for _ in range(3):
            response, took = public_get(other, host, path)
            assert (response.status, response.value("Luminet-Error")) == (503, "unavailable")
            assert took < FROZEN, f"a 503 took {took:.2f} s"
            response, took = public_get(holder, host, path)
            assert (response.status, took < FAST) == (200, True), (response, took)
    finally:
        private_redis.thaw()
    thawed = time.monotonic()
    response, _ = public_get(other, host, path)
    while response.status != 200:
        assert response.value("Luminet-Error") in {"tunnel-not-found", "unavailable"}, response
        assert time.monotonic() - thawed < HEARTBEAT + MARGIN, "not serving again in time"
        time.sleep(0.05)  # polling the public URL
        response, _ = public_get(other, host, path)
    assert client.events("tunnel_down") == [], "the client's tunnel dropped"
    for server in (holder, other):
        assert "Traceback" not in server.describe(), server.describe()
