"""Several tunnels from one client: ``--port`` repeated, and ``start`` with named tunnels.

Each tunnel gets its own public URL and reaches its own local server; they share
one inspector, whose agent API lists each by name, filters requests by tunnel and
replays to the tunnel a request came through. A refusal of one tunnel's subdomain
ends the client: none of the set is left running unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import PYTHON, Client

from . import rawclient
from .conftest import Database, Launcher, Server, Token
from .inspected import REPORT_TIMEOUT
from .localserver import LocalServer

pytestmark = [pytest.mark.timeout(60), pytest.mark.parametrize("layer", ["memory"], indirect=True)]


@pytest.fixture(scope="module")
def other_token(database: Database) -> Token:
    return database.issue_token("e2e-several-other")


@pytest.fixture
def two_locals() -> Iterator[tuple[LocalServer, LocalServer]]:
    first, second = LocalServer(), LocalServer()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def _start(
    server: Server, token: Token, home: Path, argv: list[str], name: str, log_format: str = "json"
) -> Client:
    """``python -m client`` with exactly ``argv`` (plus the server and the log format)."""
    return Client(
        server_url=server.ws_url,
        local_port=0,
        token=token.value,
        home=home,
        name=name,
        log_format=log_format,
        command=[PYTHON, "-m", "client", *argv],
        local_host=None,
    )


def _configure(home: Path, tunnels: dict[str, dict[str, object]]) -> None:
    """Write ``~/.tunnel/config`` naming ``tunnels``."""
    (home / ".tunnel").mkdir()
    (home / ".tunnel" / "config").write_text(json.dumps({"tunnels": tunnels}))


def _get_json(api: str, target: str) -> object:
    port = int(api.rsplit(":", 1)[1])
    response = rawclient.request(port, "GET", target, f"127.0.0.1:{port}")
    assert response.status == 200, response.body
    return json.loads(response.body)


def test_ports_repeated_open_one_tunnel_each(
    launcher: Launcher,
    dev_token: Token,
    two_locals: tuple[LocalServer, LocalServer],
    tmp_path: Path,
    uid: str,
) -> None:
    first, second = two_locals
    server = launcher.server(name="several-server")
    argv = ["--port", str(first.port), "--port", str(second.port), "--host", "127.0.0.1"]
    client = _start(server, dev_token, tmp_path, [*argv, "--inspect-port", "0"], "several")
    try:
        names = {f"http-{first.port}": first, f"http-{second.port}": second}
        hosts = {}
        for name in names:
            _, active = client.wait_event("tunnel_active", where={"tunnel": name})
            hosts[name] = f"{active['subdomain']}.localhost"
        assert len(set(hosts.values())) == 2

        # Each public URL reaches its own local server.
        for name, local in names.items():
            response = rawclient.request(server.port, "GET", f"/{uid}/{name}", hosts[name])
            assert response.status == 200
            assert local.only(f"/{uid}/{name}").value("host") == hosts[name]
        for name, local in names.items():
            other = next(n for n in names if n != name)
            assert local.requests(lambda r, o=other: r.path == f"/{uid}/{o}") == []

        # One inspector lists both, each request under its tunnel's name.
        api = client.inspector_url()
        listed = _get_json(api, "/api/tunnels")
        assert isinstance(listed, dict)
        assert sorted(t["name"] for t in listed["tunnels"]) == sorted(names)
        for tunnel in listed["tunnels"]:
            assert tunnel["config"]["addr"] == f"http://127.0.0.1:{names[tunnel['name']].port}"
            assert tunnel["metrics"]["http"]["count"] == 1
        name = f"http-{second.port}"
        for_second = _get_json(api, f"/api/requests/http?tunnel_name={name}")
        assert isinstance(for_second, dict)
        assert [r["request"]["uri"] for r in for_second["requests"]] == [f"/{uid}/{name}"]
        assert for_second["requests"][0]["tunnel_name"] == name
        status = _get_json(api, "/api/status")
        assert isinstance(status, dict)
        assert status["session"]["status"] == "online"
        assert sorted(t["name"] for t in status["session"]["tunnels"]) == sorted(names)
    finally:
        client.stop()


def test_start_opens_the_config_files_tunnels_with_their_settings(
    launcher: Launcher,
    dev_token: Token,
    two_locals: tuple[LocalServer, LocalServer],
    tmp_path: Path,
    uid: str,
) -> None:
    """``start web api``: each tunnel has its port, host, subdomain and host header;
    the console gives each a status block and names it on every line."""
    first, second = two_locals
    server = launcher.server(name="start-server")
    web, api = f"web{uid[:6]}", f"api{uid[:6]}"
    _configure(
        tmp_path,
        {
            "web": {"port": first.port, "host": "127.0.0.1", "subdomain": web},
            "api": {
                "port": second.port,
                "host": "127.0.0.1",
                "subdomain": api,
                "host_header": "rewrite",
            },
            "unused": {"port": 9},
        },
    )
    client = _start(
        server, dev_token, tmp_path, ["start", "web", "api", "--no-inspect"], "start", "text"
    )
    try:
        for name, sub, local in (("web", web, first), ("api", api, second)):
            index, _ = client.stdout.wait_for(
                rf"^Tunnel {name} active: http://{sub}\.localhost$", REPORT_TIMEOUT
            )
            assert (
                client.stdout.lines[index + 1] == f"→ forwarding to http://127.0.0.1:{local.port}"
            )
            assert client.stdout.lines[index + 2].startswith(f"Server: {server.ws_url} (online")
            assert client.stdout.lines[index + 3] == "Inspector: off (--no-inspect)"
        response = rawclient.request(server.port, "POST", f"/{uid}/hook", f"{api}.localhost")
        assert response.status == 200
        arrived = second.only(f"/{uid}/hook")
        assert arrived.value("host") == f"127.0.0.1:{second.port}"  # host_header: rewrite
        assert arrived.value("x-forwarded-host") == f"{api}.localhost"
        client.stdout.wait_for(rf"^api  POST    /{uid}/hook  200  \d+ ms$", REPORT_TIMEOUT)
        # "unused" was not asked for: nothing listens for it.
        assert not any("unused" in line for line in client.stdout.lines)
    finally:
        client.stop()


def test_one_refused_subdomain_ends_every_tunnel(
    launcher: Launcher,
    dev_token: Token,
    other_token: Token,
    two_locals: tuple[LocalServer, LocalServer],
    tmp_path: Path,
    uid: str,
) -> None:
    """Another token holds ``api``'s name: the client says so and exits 4, ``web`` too."""
    first, second = two_locals
    server = launcher.server(name="refused-server")
    taken = f"taken{uid[:6]}"
    holder = launcher.client(
        server, other_token, first.port, args=["--subdomain", taken], name="holder"
    )
    holder.wait_active()
    _configure(
        tmp_path,
        {
            "web": {"port": first.port, "host": "127.0.0.1"},
            "api": {"port": second.port, "host": "127.0.0.1", "subdomain": taken},
        },
    )
    client = _start(server, dev_token, tmp_path, ["start", "--all", "--no-inspect"], "refused")
    try:
        assert client.wait_exit(REPORT_TIMEOUT) == 4
        assert client.stderr.lines[-1] == (
            f"error: subdomain refused: {taken!r} is in use by another tunnel (or was, by "
            "another token, less than 60 s ago); choose another name with --subdomain"
        )
    finally:
        client.stop()
