"""The server as a person first meets it: the banner once the port accepts connections,
and routine events (a local server or tunnel dropping mid-response, a public client
leaving) logged as one line each, never as an ERROR with a traceback."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from harness import Server, manage, serve_argv

from . import rawclient
from .conftest import Database, Launcher, Token, migrated_database
from .localserver import LocalServer
from .streaming import Endless, Truncated, http_connection

pytestmark = pytest.mark.timeout(90)

BANNER_RE = r"^Luminet is ready at \S+ \(listening on 127\.0\.0\.1:(\d+)\)\.$"
#: Seconds for a server to log what happened.
LOG_TIMEOUT = 15.0


def test_the_banner_comes_once_the_port_accepts_connections(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The banner follows daphne's "Listening" line, the port it names answers at once,
    and it names the admin's URL, `make superuser` while no admin user exists, and the
    client command with the development token; no word about HTTP/2."""
    database: Database = migrated_database(tmp_path_factory)
    token_file = tmp_path / "dev-token"
    manage("dev_token", "--quiet", "--file", str(token_file), env=database.env)
    env = {**database.env, "LUMINET_PUBLIC_URL": "http://localhost:8123"}
    argv = [*serve_argv(0), "--dev-token", str(token_file)]
    server = Server("banner-server", argv, env, ready=BANNER_RE)
    try:
        port = server.wait_ready()
        # Nothing else happens between the banner and this request: no retry, no wait.
        assert rawclient.request(port, "GET", "/health", "localhost").status == 200
        lines = server.stdout.lines
        banner_at, _ = server.stdout.wait_for(BANNER_RE, LOG_TIMEOUT)
        listening_at, _ = server.stdout.wait_for(r"Listening on TCP address", LOG_TIMEOUT)
        assert listening_at < banner_at
        banner = "\n".join(lines[banner_at : banner_at + 8])
        assert "Admin: http://localhost:8123/admin/" in banner
        assert "make superuser" in banner
        plaintext = token_file.read_text().strip()
        assert f"TUNNEL_TOKEN={plaintext} .venv/bin/python -m client --port 3000" in banner
        assert not any("HTTP/2" in line for line in lines)
    finally:
        server.stop()


def test_the_banner_says_nothing_of_superuser_once_one_exists(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With an admin user, the banner names the admin's URL and no longer how to make one."""
    database = migrated_database(tmp_path_factory)
    env = {**database.env, "DJANGO_SUPERUSER_PASSWORD": "pw-" + "x" * 12}
    manage("createsuperuser", "--noinput", "--username", "op", "--email", "a@x.test", env=env)
    server = Server("banner-server", serve_argv(0), database.env, ready=BANNER_RE)
    try:
        server.wait_ready()
        at, _ = server.stdout.wait_for(r"Stop with Ctrl-C", LOG_TIMEOUT)
        banner = "\n".join(server.stdout.lines[: at + 1])
        assert "Admin: http://localhost:8000/admin/" in banner
        assert "superuser" not in banner
    finally:
        server.stop()


def assert_no_error_logged(server: Server) -> None:
    lines = server.stdout.lines
    assert not [line for line in lines if " ERROR " in line or "CRITICAL" in line], lines
    assert not [line for line in lines if "Traceback" in line], lines


def test_a_stream_dropped_mid_response_logs_one_line_and_no_traceback(
    launcher: Launcher, dev_token: Token, uid: str
) -> None:
    """The local server closing mid-response, a public client leaving mid-download and
    the tunnel dropping mid-response each leave at most an INFO line, no traceback."""
    local = LocalServer()
    try:
        server = launcher.server(name="drops-server")
        client = launcher.client(server, dev_token, local.port, name="drops-client")
        _, _, subdomain = client.wait_active()
        host = f"{subdomain}.localhost"

        local.stream(f"/{uid}/truncated", Truncated(200_000, promised=1_000_000))
        with pytest.raises(OSError):  # the connection is reset: never a clean short body
            response = rawclient.request(server.port, "GET", f"/{uid}/truncated", host)
            assert len(response.body) < 1_000_000
        server.stdout.wait_for(r" INFO tunnelsite\.server: response to .* cut off", LOG_TIMEOUT)

        leaving = f"/{uid}/leaving"
        local.stream(leaving, Endless())
        conn = http_connection(server.port, timeout=LOG_TIMEOUT)
        try:
            conn.request("GET", leaving, headers={"Host": host})
            assert conn.getresponse().read1(1024)
        finally:
            conn.close()
        client.wait_event("exchange", LOG_TIMEOUT, where={"path": leaving})

        dropped = f"/{uid}/dropped"
        local.stream(dropped, Endless())
        conn = http_connection(server.port, timeout=LOG_TIMEOUT)
        try:
            conn.request("GET", dropped, headers={"Host": host})
            response = conn.getresponse()
            assert response.read1(1024)
            mark = len(server.stdout.lines)
            client.stop(signal.SIGKILL)  # the tunnel goes without a word
            with pytest.raises((OSError, http_client_errors())):
                while response.read1(65536):  # bounded: the server resets the connection
                    pass
                raise OSError("the body ended cleanly")
        finally:
            conn.close()
        server.stdout.wait_for(r"cut off mid-way: tunnel closed", LOG_TIMEOUT, mark)
        server.stdout.wait_for(rf"tunnel {re.escape(subdomain)} closed", LOG_TIMEOUT)
        assert_no_error_logged(server)
    finally:
        local.stop()


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException
