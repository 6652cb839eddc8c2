"""The operator's side with real processes: reserved names, limits, usage, live tunnels."""

from __future__ import annotations

import html
import re
import secrets
import time
from pathlib import Path

import pytest
import requests

from harness import manage

from . import rawclient
from .conftest import Database, Launcher, Layer, Token
from .localserver import LocalServer

pytestmark = pytest.mark.timeout(90)

#: The CLI's exit status when the subdomain asked for is refused.
EXIT_NAME_REFUSED = 4


@pytest.fixture(scope="module")
def owner_token(database: Database) -> Token:
    return database.issue_token("e2e-owner")


@pytest.fixture(scope="module")
def squatter_token(database: Database) -> Token:
    return database.issue_token("e2e-squatter")


def reserve(database: Database, name: str, token: Token) -> None:
    manage("reserve_subdomain", name, "--token", token.name, env=database.env)


def stderr_of(client) -> str:
    return "\n".join(client.stderr.lines)


# -- reserved names -------------------------------------------------------------


def test_a_reserved_name_is_granted_to_its_token_and_refused_to_others(
    launcher: Launcher,
    database: Database,
    local_server: LocalServer,
    owner_token: Token,
    squatter_token: Token,
    tmp_path: Path,
    uid: str,
) -> None:
    """--subdomain NAME: the token it is reserved for gets it; another exits 4 saying why."""
    name = f"shop-{uid[:8]}"
    reserve(database, name, owner_token)
    server = launcher.server()
    squatter = launcher.client(
        server, squatter_token, local_server.port, args=["--subdomain", name], home=tmp_path / "s"
    )
    assert squatter.wait_exit(20) == EXIT_NAME_REFUSED, squatter.describe()
    assert stderr_of(squatter) == (
        f"error: subdomain refused: '{name}' is reserved for another token; "
        "use the token it is reserved for, or choose another name"
    )
    owner = launcher.client(
        server, owner_token, local_server.port, args=["--subdomain", name], home=tmp_path / "o"
    )
    assert owner.wait_active()[2] == name
    response = rawclient.request(server.port, "GET", f"/{uid}/reserved", f"{name}.localhost")
    assert (response.status, response.body) == (200, b"ok")


def test_a_remembered_name_reserved_for_another_token_is_not_given_back(
    launcher: Launcher,
    database: Database,
    local_server: LocalServer,
    owner_token: Token,
    squatter_token: Token,
    tmp_path: Path,
) -> None:
    """A client that had a name before the operator reserved it for another token gets
    another name on restart (its own hold does not count), and the owner gets it."""
    server = launcher.server(LUMINET_SUBDOMAIN_GRACE="0.2")
    first = launcher.client(server, squatter_token, local_server.port, home=tmp_path)
    _, _, had = first.wait_active()
    first.stop()
    reserve(database, had, owner_token)
    again = launcher.client(server, squatter_token, local_server.port, home=tmp_path)
    _, _, got = again.wait_active()
    assert got != had
    owner = launcher.client(
        server, owner_token, local_server.port, args=["--subdomain", had], home=tmp_path / "o"
    )
    assert owner.wait_active()[2] == had


# -- live tunnels and disconnect ------------------------------------------------

STAFF_PASSWORD = "staff-" + secrets.token_hex(8)
#: Seconds a poll of the admin page waits at most.
DEADLINE = 20.0


def staff_session(database: Database, base: str) -> requests.Session:
    """A staff user's browser session on ``base``'s admin (login form, CSRF cookie)."""
    user = f"op{secrets.token_hex(4)}"
    env = {**database.env, "DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD}
    manage("createsuperuser", "--noinput", "--username", user, "--email", "o@x.test", env=env)
    session = requests.Session()
    login = f"{base}/admin/login/"
    session.get(login, timeout=10).raise_for_status()
    answer = session.post(
        login,
        data={
            "username": user,
            "password": STAFF_PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": login},
        timeout=10,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:300]
    return session


def live_row(session: requests.Session, base: str, subdomain: str) -> list[str] | None:
    """The cells of ``subdomain``'s row on the live tunnels page, or None."""
    page = session.get(f"{base}/admin/live-tunnels/", timeout=10)
    page.raise_for_status()
    row = re.search(rf'data-subdomain="{re.escape(subdomain)}">(.*?)</tr>', page.text, re.S)
    if row is None:
        return None
    return [html.unescape(cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row[1], re.S)]


def test_the_admin_lists_and_disconnects_a_tunnel_held_by_the_other_process(
    redis_env: dict[str, str],
    postgres_database: Database,
    local_server: LocalServer,
    tmp_path: Path,
    uid: str,
) -> None:
    """On Redis, server B's admin lists the tunnel held by server A with its token, client
    address and counters, and its disconnect closes it: the client exits saying why."""
    database = postgres_database
    owner_token = database.issue_token("e2e-owner")
    launcher = Launcher(database, Layer("redis", redis_env), tmp_path / "home")
    try:
        server_a = launcher.server(name="server-a", LUMINET_HEARTBEAT_INTERVAL="0.5")
        server_b = launcher.server(name="server-b", LUMINET_HEARTBEAT_INTERVAL="0.5")
        client = launcher.client(server_a, owner_token, local_server.port, home=tmp_path)
        _, _, subdomain = client.wait_active()
        for number in range(3):
            answer = rawclient.request(
                server_b.port, "GET", f"/{uid}/{number}", f"{subdomain}.localhost"
            )
            assert answer.status == 200
        base = f"http://localhost:{server_b.port}"
        assert requests.get(f"{base}/admin/live-tunnels/", timeout=10).url.endswith(
            "/admin/login/?next=/admin/live-tunnels/"
        ), "the page is for staff only"
        session = staff_session(database, base)
        deadline = time.monotonic() + DEADLINE
        row = live_row(session, base, subdomain)
        while (row is None or row[4] != "3") and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the page: the counters arrive with a heartbeat
            row = live_row(session, base, subdomain)
        assert row is not None, launcher.describe()
        assert (row[0], row[1], row[4]) == (subdomain, owner_token.name, "3")
        assert row[2].startswith("127.0.0.1:")
        disconnect = session.post(
            f"{base}/admin/live-tunnels/{subdomain}/disconnect",
            data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{base}/admin/live-tunnels/"},
            timeout=10,
        )
        assert disconnect.status_code == 200 and "Disconnected" in disconnect.text
        assert client.wait_exit(20) == 1, client.describe()
        assert "error: disconnected by the server's operator" in stderr_of(client)
        gone = rawclient.request(server_b.port, "GET", f"/{uid}/gone", f"{subdomain}.localhost")
        assert gone.value("Luminet-Error") == "tunnel-not-found"
        assert live_row(session, base, subdomain) is None
    finally:
        launcher.close()


def test_disconnect_needs_a_csrf_token(
    launcher: Launcher, database: Database, local_server: LocalServer, owner_token: Token, tmp_path
) -> None:
    """A POST without the CSRF token disconnects nothing."""
    server = launcher.server()
    client = launcher.client(server, owner_token, local_server.port, home=tmp_path)
    _, _, subdomain = client.wait_active()
    base = f"http://localhost:{server.port}"
    session = staff_session(database, base)
    refused = session.post(f"{base}/admin/live-tunnels/{subdomain}/disconnect", timeout=10)
    assert refused.status_code == 403
    assert live_row(session, base, subdomain) is not None
    assert client.running()


def test_the_live_page_names_the_rules_and_never_a_credential(
    launcher: Launcher, database: Database, local_server: LocalServer, owner_token: Token, tmp_path
) -> None:
    """A tunnel with basic auth shows "basic auth" in its row; the password appears nowhere."""
    password = "pw-" + secrets.token_hex(8)
    server = launcher.server()
    client = launcher.client(
        server,
        owner_token,
        local_server.port,
        args=["--basic-auth", f"alice:{password}"],
        home=tmp_path,
    )
    _, _, subdomain = client.wait_active()
    base = f"http://localhost:{server.port}"
    session = staff_session(database, base)
    row = live_row(session, base, subdomain)
    assert row is not None and row[7] == "basic auth"
    assert password not in session.get(f"{base}/admin/live-tunnels/", timeout=10).text
