"""The server's own answers: health, unknown hosts, and the 502/504 errors of a tunnel."""

from __future__ import annotations

import json
import time

import pytest

from harness import clean_environ, manage

from . import rawclient
from .conftest import Launcher, Token, Tunnel
from .localserver import LocalServer, Reply

pytestmark = pytest.mark.timeout(60)


def test_health(tunnel: Tunnel) -> None:
    """GET /health on the main host answers 200 with a JSON body."""
    response = rawclient.request(tunnel.port, "GET", "/health", "localhost")
    assert response.status == 200
    assert isinstance(json.loads(response.body), dict)
    assert (response.value("Content-Type") or "").startswith("application/json")


@pytest.mark.parametrize("host", ["example.com", "a.b.localhost", "localhost.example.com"])
def test_unknown_host_is_400(tunnel: Tunnel, host: str) -> None:
    """A Host that is neither the main host nor one tunnel label under it gets 400."""
    response = rawclient.request(tunnel.port, "GET", "/health", host)
    assert response.status == 400


def test_site_paths_on_tunnel_host_are_forwarded(tunnel: Tunnel, uid: str) -> None:
    """/health, /admin/, / and /luminet.pyz on a tunnel host reach the local server, not
    the site."""
    for path in ("/health", "/admin/", "/", "/luminet.pyz"):
        response = rawclient.request(
            tunnel.port, "GET", path, tunnel.host, [("X-Test-Id", f"{uid}{path}")]
        )
        assert (response.status, response.body) == (200, b"ok")
        tunnel.local.wait_for(lambda r, p=path: r.value("X-Test-Id") == f"{uid}{p}")


def test_no_tunnel_is_502(tunnel: Tunnel) -> None:
    """A subdomain with no live tunnel gets 502 and Luminet-Error: tunnel-not-found."""
    # Generated subdomains never contain "-", so this one is never live.
    response = rawclient.request(tunnel.port, "GET", "/", "no-such-tunnel.localhost")
    assert response.status == 502
    assert response.value("Luminet-Error") == "tunnel-not-found"


def test_local_server_refusing_is_502(
    launcher: Launcher, tunnel: Tunnel, dev_token: Token, refusing_port: int
) -> None:
    """Nothing listening locally: 502 with Luminet-Error: local-refused; the client keeps
    going."""
    client = launcher.client(tunnel.server, dev_token, refusing_port, name="refused-client")
    _, _, subdomain = client.wait_active()
    for _ in range(2):
        response = rawclient.request(tunnel.port, "GET", "/", f"{subdomain}.localhost")
        assert response.status == 502, client.describe()
        assert response.value("Luminet-Error") == "local-refused"
    assert client.running(), client.describe()


def test_slow_local_server_is_504(
    launcher: Launcher, local_server: LocalServer, dev_token: Token, uid: str
) -> None:
    """No response start within LUMINET_REQUEST_TIMEOUT: 504 local-timeout; the tunnel lives on."""
    server = launcher.server(name="timeout-server", LUMINET_REQUEST_TIMEOUT="2")
    client = launcher.client(server, dev_token, local_server.port, name="timeout-client")
    _, _, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"
    local_server.route(f"/{uid}/slow", Reply(delay=8))

    started = time.monotonic()
    response = rawclient.request(server.port, "GET", f"/{uid}/slow", host)
    elapsed = time.monotonic() - started

    assert response.status == 504, launcher.describe()
    assert response.value("Luminet-Error") == "local-timeout"
    assert 1.5 <= elapsed < 6, f"answered after {elapsed:.1f} s with a 2 s timeout"
    after = rawclient.request(server.port, "GET", f"/{uid}/after", host)
    assert (after.status, after.body) == (200, b"ok")


STATS_RE = r"stats: tasks=(\d+) connections=(\d+) budget_held=(\d+)$"


def test_stats_interval_logs_tasks_connections_and_budget(
    launcher: Launcher, local_server: LocalServer, dev_token: Token
) -> None:
    """LUMINET_STATS_INTERVAL makes the server log a stats line that often; a tunnel counts."""
    server = launcher.server(name="stats-server", LUMINET_STATS_INTERVAL="0.2")
    _, idle = server.stdout.wait_for(STATS_RE, timeout=10)
    assert idle.groups() == ("0", "0", "0")
    client = launcher.client(
        server, dev_token, local_server.port, name="stats-client", args=["--connections", "1"]
    )
    client.wait_active()
    _, busy = server.stdout.wait_for(r"stats: tasks=(\d+) connections=1 budget_held=0$", 10)
    assert int(busy[1]) > 0  # the tunnel's consumer and its heartbeat


def test_no_stats_line_by_default(tunnel: Tunnel) -> None:
    """Without LUMINET_STATS_INTERVAL the server logs no stats line."""
    assert not [line for line in tunnel.server.stdout.lines if "stats:" in line]


def test_deploy_check_is_clean_with_an_https_public_url(tmp_path) -> None:
    """Issue 8, defect 7: ``manage.py check --deploy`` finds nothing to fix on an https
    deployment (secure cookies, https redirect, HSTS), W004/W008/W012/W016 included."""
    env = clean_environ(
        {
            "SECRET_KEY": "x" * 60 + "deploy-check-only-not-a-real-key",
            "LUMINET_PUBLIC_URL": "https://tunnel.example.com",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        }
    )
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert "no issues" in done.stdout + done.stderr
