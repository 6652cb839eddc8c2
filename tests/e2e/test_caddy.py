"""The deployment through real Caddy (deploy/Caddyfile.local, tls internal), over HTTPS
and WSS trusting Caddy's local CA, in front of two daphne processes on one Redis and
PostgreSQL (the stack's own SQLite where PostgreSQL is missing, outside CI): what
reaches the local server and the caller is what they sent, nothing of Caddy's added;
the caller's address decides the edge rules; the admin and its static files work; both
processes take public requests.

One stack for the module (harness.stack, as `make stack` runs it).
"""

from __future__ import annotations

import gzip
import http.client
import os
import secrets
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import websocket
from prometheus_client.parser import text_string_to_metric_families

from harness import Client, HarnessError, manage
from harness.loopback import session as loopback_session
from harness.loopback import tls_socket
from harness.stack import DOMAIN, Stack

from .conftest import CHROMIUM, CHROMIUM_ARGS, Database, last_line, start_stack
from .localserver import LocalServer, Reply
from .wslocal import HttpReply, WsLocalServer

pytestmark = pytest.mark.timeout(120)

#: Seconds for one call through Caddy.
CALL_TIMEOUT = 15.0
#: Unique: the PostgreSQL database is the whole run's.
ADMIN_USER = f"operator-{uuid.uuid4().hex[:8]}"
ADMIN_PASSWORD = "caddy-" + secrets.token_hex(8)


@dataclass(frozen=True)
class Tunnels:
    """Clients through Caddy: to the HTTP and WebSocket local servers, and two with IP rules."""

    http: str
    ws: str
    allowing_loopback: str
    denying_loopback: str
    http_client: Client


@dataclass
class Deployment:
    stack: Stack
    api_key: str
    token: str
    token_name: str

    def url(self, subdomain: str, target: str = "/") -> str:
        return f"https://{subdomain}.{DOMAIN}:{self.stack.https_port}{target}"

    def session(self) -> requests.Session:
        return loopback_session(self.stack.ca)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, stack_database: Database | None
) -> Iterator[Deployment]:
    stack = start_stack(tmp_path_factory.mktemp("stack"), stack_database)
    try:
        token_name = f"caddy-{uuid.uuid4().hex[:8]}"
        token = stack.manage("issue_token", "--name", token_name)
        key = stack.manage("issue_api_key", "--name", f"caddy-{uuid.uuid4().hex[:8]}")
        env = {**stack.env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD}
        manage(
            "createsuperuser", "--noinput", "--username", ADMIN_USER, "--email", "a@x.test", env=env
        )
        yield Deployment(stack, last_line(key), last_line(token), token_name)
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def tunnels(deployment: Deployment, local_server: LocalServer, ws_local: WsLocalServer) -> Tunnels:
    """Four clients, started together; stopped with the stack."""
    stack, token = deployment.stack, deployment.token
    http = stack.client(token, local_server.port, name="http-client")
    ws = stack.client(token, ws_local.port, name="ws-client")
    allowing = stack.client(
        token, local_server.port, name="allow-client", args=["--allow-cidr", "127.0.0.1/32"]
    )
    denying = stack.client(
        token, local_server.port, name="deny-client", args=["--deny-cidr", "127.0.0.1"]
    )
    subdomains = []
    for client in (http, ws, allowing, denying):
        try:
            subdomains.append(client.wait_active()[2])
        except HarnessError as exc:
            pytest.fail(f"{exc}\n{stack.describe()}")
    return Tunnels(*subdomains, http_client=http)


def test_the_client_prints_an_https_url(deployment: Deployment, tunnels: Tunnels) -> None:
    _, active = tunnels.http_client.wait_event("tunnel_active")
    assert active["url"] == deployment.url(tunnels.http).rstrip("/")


def test_the_processes_share_the_postgresql_database(
    deployment: Deployment, tunnels: Tunnels, stack_database: Database | None
) -> None:
    """The token the clients authenticated with is a row of the run's PostgreSQL database,
    and a process recorded its use there."""
    if stack_database is None:
        pytest.skip("PostgreSQL is missing: the stack runs on its own SQLite")
    assert deployment.stack.database_url == stack_database.url
    rows = stack_database.execute(
        "SELECT last_used_at FROM tokens_token WHERE name = %s", [deployment.token_name]
    )
    assert len(rows) == 1
    assert rows[0][0] is not None


def test_http_passes_byte_exact_with_nothing_of_caddys(
    deployment: Deployment, tunnels: Tunnels, local_server: LocalServer, uid: str
) -> None:
    """A request and its answer pass unchanged both ways; the local server sees one
    X-Forwarded-Proto: https, the caller in X-Forwarded-For and no Via; the caller sees
    neither Via nor Server: Caddy."""
    upload = os.urandom(300 * 1024) + bytes(range(256))
    compressed = gzip.compress(os.urandom(512 * 1024), mtime=0)
    local_server.route(
        f"/{uid}/exact",
        Reply(
            status=201,
            headers=(
                ("Content-Encoding", "gzip"),
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; Path=/"),
                ("X-Local", "yes"),
                ("Server", "local/1.0"),
            ),
            body=compressed,
        ),
    )
    with deployment.session() as session:
        answer = session.post(
            deployment.url(tunnels.http, f"/{uid}/exact?q=1&q=2"),
            data=upload,
            headers={"X-Caller": "c"},
            stream=True,
            timeout=CALL_TIMEOUT,
        )
        body = answer.raw.read(decode_content=False)

    assert answer.status_code == 201, deployment.stack.describe()
    assert body == compressed
    assert answer.headers["Content-Encoding"] == "gzip"
    assert answer.raw.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert answer.headers["X-Local"] == "yes"
    # What the local server sent, its Server among it, and Date (RFC 9110 section
    # 6.6.1): no Via, Server or Alt-Svc of Caddy's.
    assert sorted(name.lower() for name in answer.headers) == [
        "content-encoding",
        "content-length",
        "date",
        "server",
        "set-cookie",
        "x-local",
    ]
    assert answer.headers["Server"] == "local/1.0"

    seen = local_server.only(f"/{uid}/exact")
    assert (seen.method, seen.target, seen.body) == ("POST", f"/{uid}/exact?q=1&q=2", upload)
    assert seen.values("x-forwarded-proto") == ["https"]
    assert seen.values("x-forwarded-for") == ["127.0.0.1"]
    assert seen.values("x-forwarded-host") == [
        f"{tunnels.http}.{DOMAIN}:{deployment.stack.https_port}"
    ]
    assert seen.values("via") == []
    assert seen.values("x-caller") == ["c"]


def test_caddy_asks_for_no_compression_the_caller_did_not(
    deployment: Deployment, tunnels: Tunnels, local_server: LocalServer, uid: str
) -> None:
    """A caller that sends no Accept-Encoding: Caddy adds none (Go would then unzip the
    answer itself), and the gzip bytes the local server sends arrive as sent."""
    compressed = gzip.compress(os.urandom(64 * 1024), mtime=0)
    local_server.route(
        f"/{uid}/gzip", Reply(headers=(("Content-Encoding", "gzip"),), body=compressed)
    )
    host = f"{tunnels.http}.{DOMAIN}:{deployment.stack.https_port}"
    sock = tls_socket(host.partition(":")[0], deployment.stack.https_port, deployment.stack.ca)
    with sock:
        # By hand: http.client and requests would send Accept-Encoding themselves.
        sock.sendall(
            f"GET /{uid}/gzip HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
        answer.begin()
        body = answer.read()
    assert answer.status == 200
    assert answer.getheader("Content-Encoding") == "gzip"
    assert body == compressed
    # The caller sent Host alone: the local server gets it and Luminet's forwarding
    # headers, nothing of Caddy's (no Accept-Encoding, User-Agent or Via).
    seen = local_server.only(f"/{uid}/gzip")
    names = [name for name, _ in seen.headers]
    assert names == ["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]
    # Caddy adds Date where the local server sent none (RFC 9110 section 6.6.1 asks a
    # proxy with a clock to); Connection is the caller's own hop.
    assert [name for name, _ in answer.getheaders()] == [
        "Content-Encoding",
        "Content-Length",
        "Date",
        "Connection",
    ]


def test_a_websocket_passes_byte_exact(
    deployment: Deployment, tunnels: Tunnels, ws_local: WsLocalServer, uid: str
) -> None:
    """wss:// through Caddy: text and binary messages come back as sent; the local server's
    handshake has one X-Forwarded-Proto: https and no Via, the caller's no Server: Caddy."""
    host = f"{tunnels.ws}.{DOMAIN}"
    port = deployment.stack.https_port
    sock = tls_socket(host, port, deployment.stack.ca)
    ws = websocket.create_connection(
        f"wss://{host}:{port}/{uid}/echo", socket=sock, timeout=CALL_TIMEOUT
    )
    try:
        # The handshake's answer: Caddy's Server header gone, as from other answers.
        handshake = {name.lower() for name in ws.getheaders() or {}}
        assert handshake == {"connection", "upgrade", "sec-websocket-accept", "date"}
        binary = os.urandom(200 * 1024)
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send_binary(binary)
        assert ws.recv() == binary
    finally:
        ws.close()
    seen = ws_local.wait_seen(lambda s: s.path == f"/{uid}/echo")
    assert seen.upgraded
    assert seen.values("x-forwarded-proto") == ["https"]
    assert seen.values("x-forwarded-for") == ["127.0.0.1"]
    assert seen.values("via") == []


def test_the_callers_address_decides_the_edge_rules(
    deployment: Deployment, tunnels: Tunnels, local_server: LocalServer, uid: str
) -> None:
    """Behind Caddy the caller (127.0.0.1 here) is allowed or denied by its own address;
    an X-Forwarded-For the caller writes changes neither answer."""
    local_server.route(f"/{uid}/rules", Reply(body=b"let in"))
    forged = {"X-Forwarded-For": "198.51.100.7"}
    with deployment.session() as session:
        for headers in ({}, forged):
            allowed = session.get(
                deployment.url(tunnels.allowing_loopback, f"/{uid}/rules"),
                headers=headers,
                timeout=CALL_TIMEOUT,
            )
            assert (allowed.status_code, allowed.content) == (200, b"let in")
            denied = session.get(
                deployment.url(tunnels.denying_loopback, f"/{uid}/rules"),
                headers=headers,
                timeout=CALL_TIMEOUT,
            )
            assert denied.status_code == 403
            assert denied.headers["Luminet-Error"] == "ip-denied"


def test_the_admin_login_works_through_caddy(deployment: Deployment) -> None:
    """The login form, its CSRF check over https and the session cookie, through Caddy."""
    base = deployment.stack.public_url
    with deployment.session() as session:
        form = session.get(f"{base}/admin/login/", timeout=CALL_TIMEOUT)
        assert form.status_code == 200, form.text[:300]
        assert form.url == f"{base}/admin/login/"  # no redirect: Django knows it is https
        csrf = session.cookies["__Host-csrftoken"]
        login = session.post(
            f"{base}/admin/login/?next=/admin/",
            data={
                "username": ADMIN_USER,
                "password": ADMIN_PASSWORD,
                "csrfmiddlewaretoken": csrf,
                "next": "/admin/",
            },
            headers={"Origin": base, "Referer": f"{base}/admin/login/"},
            allow_redirects=False,
            timeout=CALL_TIMEOUT,
        )
        assert login.status_code == 302, login.text[:500]
        assert "__Host-sessionid" in session.cookies
        index = session.get(f"{base}/admin/", timeout=CALL_TIMEOUT)
    assert index.status_code == 200
    assert "Site administration" in index.text


def test_the_admins_static_files_come_through_caddy(deployment: Deployment) -> None:
    with deployment.session() as session:
        css = session.get(
            f"{deployment.stack.public_url}/static/admin/css/base.css", timeout=CALL_TIMEOUT
        )
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert b"body" in css.content


def answered_requests(deployment: Deployment, port: int) -> float:
    """luminet_requests_total of one process, read from it directly (not through Caddy)."""
    answer = requests.get(
        f"http://127.0.0.1:{port}/metrics",
        headers={
            "Host": f"{DOMAIN}:{deployment.stack.https_port}",
            # As Caddy would say: the main host is https-only.
            "X-Forwarded-Proto": "https",
            "Authorization": f"Bearer {deployment.api_key}",
        },
        timeout=CALL_TIMEOUT,
    )
    assert answer.status_code == 200, answer.text[:300]
    return sum(
        sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "luminet_requests_total"
    )


def test_both_processes_take_public_requests(
    deployment: Deployment, tunnels: Tunnels, local_server: LocalServer, uid: str
) -> None:
    """Caddy spreads public requests over both processes: each one's request counter grows."""
    ports = [server.port for server in deployment.stack.servers]
    before = [answered_requests(deployment, port) for port in ports]
    local_server.route(f"/{uid}/spread", Reply(body=b"spread"))
    with deployment.session() as session:
        for _ in range(8):
            answer = session.get(
                deployment.url(tunnels.http, f"/{uid}/spread"), timeout=CALL_TIMEOUT
            )
            assert answer.content == b"spread"
    after = [answered_requests(deployment, port) for port in ports]
    grew = [later - earlier for earlier, later in zip(before, after, strict=True)]
    assert all(count > 0 for count in grew), grew
    assert sum(grew) == 8


def test_a_plain_http_caller_of_the_stack_is_not_served(deployment: Deployment) -> None:
    """Caddy serves https alone here: the port refuses plain HTTP with 400, never proxies it."""
    host = f"{DOMAIN}:{deployment.stack.https_port}"
    answer = requests.get(
        f"http://127.0.0.1:{deployment.stack.https_port}/health",
        headers={"Host": host},
        timeout=CALL_TIMEOUT,
    )
    assert answer.status_code == 400


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>Luminet behind Caddy</title>
<p>Over wss: <span id="greeting">waiting</span></p>
<script>
  const ws = new WebSocket("wss://" + location.host + location.pathname + "ws");
  ws.onmessage = (event) => { document.getElementById("greeting").textContent = event.data; };
</script>
"""


def nss_home(directory: Path, ca: Path | None) -> Path:
    """A HOME whose NSS database (Chromium's trust store on Linux) holds ``ca``, if given."""
    certutil = shutil.which("certutil")
    if certutil is None:
        reason = "certutil is missing: apt-get install libnss3-tools"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true)")
        pytest.skip(reason)
    nssdb = directory / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    database = f"sql:{nssdb}"
    subprocess.run([certutil, "-d", database, "-N", "--empty-password"], check=True, timeout=30)
    if ca is not None:
        add = [certutil, "-d", database, "-A", "-t", "C,,", "-n", "Luminet stack CA", "-i", str(ca)]
        subprocess.run(add, check=True, timeout=30)
    return directory


def test_chromium_trusting_caddys_ca_loads_a_tunnel_over_https_and_wss(
    deployment: Deployment, tunnels: Tunnels, ws_local: WsLocalServer, uid: str, tmp_path: Path
) -> None:
    """With Caddy's CA in its NSS database (as `make stack` says), Chromium opens the tunnel's
    https:// page and its wss:// WebSocket; without it, the certificate is refused."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true)")
        pytest.skip(reason)
    from playwright.sync_api import Error, expect, sync_playwright

    greeting = f"hello over wss {uid}"
    ws_local.route(f"/{uid}/", HttpReply(200, PAGE.encode(), "text/html; charset=utf-8"))
    ws_local.greet(f"/{uid}/ws", greeting)
    url = deployment.url(tunnels.ws, f"/{uid}/")
    trusting = nss_home(tmp_path / "trusting", deployment.stack.ca)
    distrusting = nss_home(tmp_path / "distrusting", None)
    with sync_playwright() as playwright:
        for home, trusted in ((trusting, True), (distrusting, False)):
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                env={**os.environ, "HOME": str(home)},
            )
            try:
                page = browser.new_page()
                if not trusted:
                    with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                        page.goto(url, timeout=CALL_TIMEOUT * 1000)
                    continue
                response = page.goto(url, timeout=CALL_TIMEOUT * 1000)
                assert response is not None and response.status == 200
                expect(page.locator("#greeting")).to_have_text(
                    greeting, timeout=CALL_TIMEOUT * 1000
                )
            finally:
                browser.close()


def test_a_process_that_is_down_costs_no_request(deployment: Deployment) -> None:
    """(Last in the module: the clients of the stopped process reconnect.) With one process
    stopped, every request through Caddy is answered by the other:
    Caddy retries a process it cannot reach (lb_try_duration) instead of answering 502.
    The process then starts again on its port and is taken back."""
    stack = deployment.stack
    # Killed, not stopped: it is gone at once, before Caddy's next health check (every
    # 2 s) can take it out, so round robin still sends it every other request.
    stack.stop_server(1, signal.SIGKILL)
    try:
        with deployment.session() as session:
            statuses = [
                session.get(f"{stack.public_url}/health", timeout=CALL_TIMEOUT).status_code
                for _ in range(20)
            ]
    finally:
        stack.start_server(1)
    assert statuses == [200] * 20
