"""The admin's static files: served by the server itself on the main host (WhiteNoise),
never on a tunnel host, whose paths all belong to the local server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import manage

from . import rawclient
from .conftest import Database, Launcher, Layer, Tunnel

pytestmark = pytest.mark.timeout(90)

STYLESHEET = "/static/admin/css/base.css"


def test_admin_stylesheet_is_served_on_the_main_host(tunnel: Tunnel) -> None:
    """GET /static/admin/css/base.css on the main host answers 200 with text/css."""
    response = rawclient.request(tunnel.port, "GET", STYLESHEET, "localhost")
    assert response.status == 200
    assert (response.value("Content-Type") or "").startswith("text/css")
    assert b"--body-bg" in response.body


def test_static_paths_on_a_tunnel_host_reach_the_local_server(tunnel: Tunnel, uid: str) -> None:
    """The same path on a tunnel host is the local server's: it is forwarded, not served."""
    response = rawclient.request(
        tunnel.port, "GET", STYLESHEET, tunnel.host, [("X-Test-Id", f"{uid}-static")]
    )
    assert (response.status, response.body) == (200, b"ok")
    seen = tunnel.local.wait_for(lambda r: r.value("X-Test-Id") == f"{uid}-static")
    assert seen.path == STYLESHEET


@pytest.fixture
def production_launcher(sqlite_database: Database, home: Path) -> Iterator[Launcher]:
    launcher = Launcher(sqlite_database, Layer("memory", {}), home)
    try:
        yield launcher
    finally:
        launcher.close()


def test_collected_static_files_are_served_without_debug(
    production_launcher: Launcher, tmp_path: Path
) -> None:
    """Without DEBUG, the files `collectstatic` gathered into STATIC_ROOT are served; the
    deployment's path (`make serve` runs collectstatic)."""
    settings = {
        "DEBUG": "false",
        "SECRET_KEY": "static-test-key-" + "x" * 40,
        "LUMINET_STATIC_ROOT": str(tmp_path / "static"),
    }
    server = production_launcher.server(name="nodebug-server", **settings)
    before = rawclient.request(server.port, "GET", STYLESHEET, "localhost")
    # Collected after the start: WhiteNoise without DEBUG indexes STATIC_ROOT once,
    # at start, so this server shows what a missing collectstatic looks like.
    assert before.status == 404
    manage("collectstatic", "--noinput", env=production_launcher.server_env(**settings))
    assert (tmp_path / "static" / "admin" / "css" / "base.css").is_file()
    collected = production_launcher.server(name="collected-server", **settings)
    response = rawclient.request(collected.port, "GET", STYLESHEET, "localhost")
    assert response.status == 200
    assert (response.value("Content-Type") or "").startswith("text/css")
    # Far-future caching is only for hashed names; these get a short max-age.
    assert "max-age" in (response.value("Cache-Control") or "")
