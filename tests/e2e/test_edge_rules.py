"""Basic auth and IP rules at the edge: a real client with --basic-auth, --allow-cidr and
--deny-cidr, a real server behind a trusted proxy (127.0.0.1, so X-Forwarded-For
stands for IPv4 and IPv6 callers), and the local server that refusals never reach."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import PYTHON, Client, Server, manage

from . import rawclient
from .conftest import Database, Launcher, Layer, Token
from .localserver import LocalServer, Reply

pytestmark = pytest.mark.timeout(90)

ANN = "ann:correct horse"


def basic(credential: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(credential.encode()).decode())


class Guarded:
    """A server trusting 127.0.0.1 as its proxy, and tunnels with rules on it."""

    def __init__(self, launcher: Launcher, local: LocalServer, token: Token) -> None:
        self.launcher = launcher
        self.local = local
        self.server = launcher.server(name="rules-server", LUMINET_TRUSTED_PROXIES="127.0.0.1")
        self.clients: list[Client] = []
        self.auth_host = self.start(token, "--basic-auth", ANN)
        self.ip_host = self.start(
            token,
            "--allow-cidr",
            "198.51.100.0/24",
            "--allow-cidr",
            "2001:db8::/32",
            "--deny-cidr",
            "198.51.100.9",
            "--deny-cidr",
            "2001:db8:bad::/48",
        )

    def start(self, token: Token, *flags: str) -> str:
        client: Client = self.launcher.client(
            self.server, token, self.local.port, name="rules-client", args=flags
        )
        _, _, subdomain = client.wait_active()
        self.clients.append(client)
        return f"{subdomain}.localhost"

    def get(self, host: str, path: str, *headers: tuple[str, str]) -> rawclient.Response:
        return rawclient.request(self.server.port, "GET", path, host, headers)


@pytest.fixture(scope="module")
def guarded(
    layer: Layer, database: Database, dev_token: Token, local_server: LocalServer, home: Path
) -> Iterator[Guarded]:
    launcher = Launcher(database, layer, home)
    try:
        yield Guarded(launcher, local_server, dev_token)
    finally:
        launcher.close()


def test_basic_auth_right_wrong_and_missing(guarded: Guarded, uid: str) -> None:
    """401 with WWW-Authenticate until the credentials match; the local server never
    sees a refused request, nor the Authorization header of an admitted one."""
    for case, headers in [("missing", ()), ("wrong", (basic("ann:wrong horse"),))]:
        response = guarded.get(guarded.auth_host, f"/{uid}/{case}", *headers)
        assert response.status == 401, guarded.launcher.describe()
        assert response.value("Luminet-Error") == "auth-required"
        assert response.value("WWW-Authenticate").startswith('Basic realm="luminet"')
    response = guarded.get(guarded.auth_host, f"/{uid}/right", basic(ANN))
    assert response.status == 200, guarded.launcher.describe()
    seen = guarded.local.only(f"/{uid}/right")
    assert seen.value("Authorization") is None
    assert guarded.local.requests(lambda r: r.path in (f"/{uid}/missing", f"/{uid}/wrong")) == []


@pytest.mark.parametrize(
    ("caller", "status"),
    [
        ("198.51.100.7", 200),
        ("198.51.100.9", 403),  # denied inside the allowed network
        ("192.0.2.1", 403),
        ("2001:db8::1", 200),
        ("2001:db8:bad::1", 403),
        ("2001:db9::1", 403),
    ],
)
def test_allow_and_deny_by_cidr(guarded: Guarded, uid: str, caller: str, status: int) -> None:
    """Callers (IPv4 and IPv6, named by the trusted proxy) pass or get 403 ip-denied."""
    path = f"/{uid}/ip"
    forged_left = ("X-Forwarded-For", f"203.0.113.1, {caller}")
    response = guarded.get(guarded.ip_host, path, forged_left)
    assert response.status == status, guarded.launcher.describe()
    if status == 403:
        assert response.value("Luminet-Error") == "ip-denied"
        assert guarded.local.requests(lambda r: r.path == path) == []
    else:
        guarded.local.only(path)


def test_websocket_upgrade_is_refused_by_the_same_rules(guarded: Guarded, uid: str) -> None:
    """A WebSocket handshake without credentials, or from a refused address, is refused."""
    upgrade = (
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", base64.b64encode(b"0123456789abcdef").decode()),
        ("Sec-WebSocket-Version", "13"),
    )
    no_password = guarded.get(guarded.auth_host, f"/{uid}/ws", *upgrade)
    assert no_password.status == 401, guarded.launcher.describe()
    assert no_password.value("Luminet-Error") == "auth-required"
    denied = guarded.get(guarded.ip_host, f"/{uid}/ws", *upgrade, ("X-Forwarded-For", "192.0.2.1"))
    assert denied.status == 403
    assert denied.value("Luminet-Error") == "ip-denied"
    assert guarded.local.requests(lambda r: r.path == f"/{uid}/ws") == []


def test_a_forged_forwarded_for_from_an_untrusted_peer_decides_nothing(
    launcher: Launcher, local_server: LocalServer, dev_token: Token, uid: str
) -> None:
    """Without trusted proxies the peer (127.0.0.1) is the caller, whatever the header says."""
    server: Server = launcher.server(name="untrusting-server")
    client = launcher.client(
        server, dev_token, local_server.port, args=["--allow-cidr", "198.51.100.0/24"]
    )
    _, _, subdomain = client.wait_active()
    forged = ("X-Forwarded-For", "198.51.100.7")
    response = rawclient.request(
        server.port, "GET", f"/{uid}/forged", f"{subdomain}.localhost", [forged]
    )
    assert response.status == 403, launcher.describe()
    assert local_server.requests(lambda r: r.path == f"/{uid}/forged") == []


def test_cookies_reaching_other_tunnels_become_host_only(guarded: Guarded, uid: str) -> None:
    """Set-Cookie for the tunnel domain or a sibling loses its Domain; others pass unchanged."""
    kept = [
        "plain=1; Path=/; HttpOnly",
        f"own=2; Domain={guarded.auth_host}; Secure",
        "odd=caf\xe9; Domain=unrelated.org",
    ]
    sent = [
        ("Set-Cookie", "wide=3; Domain=localhost; Path=/"),
        ("Set-Cookie", "sibling=4; domain=.other.localhost"),
        *[("Set-Cookie", value) for value in kept],
    ]
    guarded.local.route(f"/{uid}/cookies", Reply(headers=tuple(sent)))
    response = guarded.get(guarded.auth_host, f"/{uid}/cookies", basic(ANN))
    assert response.status == 200, guarded.launcher.describe()
    assert response.values("Set-Cookie") == ["wide=3; Path=/", "sibling=4", *kept]


def test_the_token_allow_list_holds_for_its_tunnels(
    launcher: Launcher, database: Database, local_server: LocalServer, uid: str
) -> None:
    """A token's allowed networks (set by the operator) hold for a tunnel without rules."""
    token = database.issue_token("allow-list")
    manage(
        "shell",
        "-c",
        "from tokens.models import Token; "
        f"Token.objects.filter(name={token.name!r}).update(allowed_cidrs='198.51.100.0/24')",
        env=database.env,
    )
    server = launcher.server(name="token-rules", LUMINET_TRUSTED_PROXIES="127.0.0.1")
    client = launcher.client(server, token, local_server.port, name="token-client")
    _, _, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"
    outside = rawclient.request(
        server.port, "GET", f"/{uid}/out", host, [("X-Forwarded-For", "192.0.2.1")]
    )
    assert outside.status == 403, launcher.describe()
    assert outside.value("Luminet-Error") == "ip-denied"
    inside = rawclient.request(
        server.port, "GET", f"/{uid}/in", host, [("X-Forwarded-For", "198.51.100.5")]
    )
    assert inside.status == 200, launcher.describe()
    local_server.only(f"/{uid}/in")
    assert local_server.requests(lambda r: r.path == f"/{uid}/out") == []


def test_a_rule_holds_on_the_other_process(
    redis_launcher: Launcher, local_server: LocalServer, postgres_token: Token, uid: str
) -> None:
    """With the client on process A, a request landing on process B meets the same rules."""
    launcher = redis_launcher
    server_a = launcher.server(name="rules-a")
    server_b = launcher.server(name="rules-b")
    client = launcher.client(
        server_a, postgres_token, local_server.port, args=["--basic-auth", ANN]
    )
    _, _, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"
    refused = rawclient.request(server_b.port, "GET", f"/{uid}/b-refused", host)
    assert refused.status == 401, launcher.describe()
    admitted = rawclient.request(server_b.port, "GET", f"/{uid}/b-admitted", host, [basic(ANN)])
    assert admitted.status == 200, launcher.describe()
    assert local_server.only(f"/{uid}/b-admitted").value("Authorization") is None
    assert local_server.requests(lambda r: r.path == f"/{uid}/b-refused") == []


def test_refusals_show_in_the_client_json_log(guarded: Guarded, uid: str) -> None:
    """The tunnel's client logs each refusal as an event, and at most 10 a second."""
    auth_client, ip_client = guarded.clients
    # The rules in force are named when the tunnel comes up, as the server applies them.
    assert auth_client.wait_event("tunnel_active")[1]["rules"] == ["basic auth"]
    assert ip_client.wait_event("tunnel_active")[1]["rules"] == [
        "allow 198.51.100.0/24",
        "allow 2001:db8::/32",
        "deny 198.51.100.9/32",
        "deny 2001:db8:bad::/48",
    ]
    guarded.get(guarded.auth_host, f"/{uid}/logged")
    _, event = auth_client.wait_event("refused", where={"path": f"/{uid}/logged"})
    assert (event["method"], event["status"], event["rule"]) == ("GET", 401, "basic auth")
    guarded.get(guarded.ip_host, f"/{uid}/ip-logged", ("X-Forwarded-For", "198.51.100.9"))
    _, event = ip_client.wait_event("refused", where={"path": f"/{uid}/ip-logged"})
    assert (event["status"], event["rule"]) == (403, "deny 198.51.100.9/32")
    started = time.monotonic()
    for number in range(60):
        guarded.get(guarded.auth_host, f"/{uid}/flood-{number}")
    elapsed = time.monotonic() - started
    flood = [e for e in auth_client.events("refused") if e["path"].startswith(f"/{uid}/flood-")]
    # 10 a second per process and per tunnel: the seconds the flood spanned bound them.
    assert len(flood) <= 10 * (int(elapsed) + 2), (len(flood), elapsed)
    assert guarded.local.requests(lambda r: r.path.startswith(f"/{uid}/flood-")) == []


def ipv6_get(port: int, host: str, path: str) -> int:
    """One GET from [::1] to [::1]:port; the response's status."""
    with socket.create_connection(("::1", port), timeout=15) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status_line = sock.makefile("rb").readline().decode("latin-1")
    return int(status_line.split()[1])


def test_a_real_ipv6_peer_meets_the_ip_rules(
    launcher: Launcher, local_server: LocalServer, dev_token: Token, uid: str
) -> None:
    """With the server on [::1] the caller's address is IPv6 itself: allowed or denied."""
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 on this machine")
    argv = [PYTHON, "manage.py", "serve", "--bind", "::1", "--port", "0"]
    server = Server(
        "ipv6-server",
        argv,
        launcher.server_env(),
        ready=r"Listening on TCP address \[?::1\]?:(\d+)",
    )
    try:
        server.wait_ready()
        url = f"ws://[::1]:{server.port}/tunnel"
        allowed = launcher.client(url, dev_token, local_server.port, args=["--allow-cidr", "::1"])
        denied = launcher.client(url, dev_token, local_server.port, args=["--deny-cidr", "::/0"])
        hosts = [f"{client.wait_active()[2]}.localhost" for client in (allowed, denied)]
        assert ipv6_get(server.port, hosts[0], f"/{uid}/v6-allowed") == 200, server.describe()
        assert ipv6_get(server.port, hosts[1], f"/{uid}/v6-denied") == 403, server.describe()
        local_server.only(f"/{uid}/v6-allowed")
        assert local_server.requests(lambda r: r.path == f"/{uid}/v6-denied") == []
    finally:
        launcher.close()
        server.stop()
