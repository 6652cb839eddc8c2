"""The admin API under ``/api/`` against a real server: who may call it, and what each
endpoint does. Callers are a staff session (CSRF checked on writes) or an API key;
anonymous callers, non-staff users, wrong keys and tunnel tokens get 401. A
property-based run of schemathesis against the served OpenAPI finds no 500.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import websocket

from client import protocol
from harness import PYTHON, manage

from .conftest import Launcher, Layer, Server, Token, last_line, migrated_database
from .rawtunnel import RawTunnel

pytestmark = pytest.mark.timeout(120)

#: Seconds for one API call.
CALL_TIMEOUT = 10.0
STAFF_PASSWORD = "staff-" + secrets.token_hex(8)


@dataclass(frozen=True)
class Api:
    server: Server
    #: An API key, and the user names of a staff user and of a user who is not staff.
    key: str
    staff: str
    #: A logged-in session of a user who is not staff.
    plain_session: requests.Session
    #: A tunnel token of the same database: it opens tunnels, never the API.
    tunnel_token: Token

    @property
    def base(self) -> str:
        # localhost is the main host (LUMINET_PUBLIC_URL http://localhost), and
        # resolves without help; *.localhost would be a tunnel host.
        return f"http://localhost:{self.server.port}"

    def call(
        self, method: str, path: str, key: str | None = None, **kwargs: object
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.request(
            method, self.base + path, headers=headers, timeout=CALL_TIMEOUT, **kwargs
        )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # A database of its own: schemathesis revokes whichever token ids it guesses, and
    # the session's tokens (dev_token's among them) must outlive this module.
    database = migrated_database(tmp_path_factory)
    key = manage("issue_api_key", "--name", f"e2e-{secrets.token_hex(4)}", env=database.env)
    env = {**database.env, "DJANGO_SUPERUSER_PASSWORD": STAFF_PASSWORD}
    staff, plain = f"staff{secrets.token_hex(3)}", f"plain{secrets.token_hex(3)}"
    for user in (staff, plain):
        manage("createsuperuser", "--noinput", "--username", user, "--email", "a@x.test", env=env)
    launcher = Launcher(database, Layer("memory", {}), tmp_path_factory.mktemp("api-home"))
    try:
        server = launcher.server(name="api-server")
        tunnel_token = database.issue_token("e2e-api-tunnel")
        api = Api(server, last_line(key.stdout), staff, requests.Session(), tunnel_token)
        # The admin's login takes staff only: this user logs in, then loses the right.
        session = _session(api, plain, STAFF_PASSWORD)
        manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; User.objects.filter("
            f"username={plain!r}).update(is_staff=False, is_superuser=False)",
            env=database.env,
        )
        yield Api(api.server, api.key, staff, session, tunnel_token)
    finally:
        launcher.close()


def _session(api: Api, username: str, password: str) -> requests.Session:
    """A browser's session: the admin's login form, with its CSRF cookie and field."""
    session = requests.Session()
    login = f"{api.base}/admin/login/"
    session.get(login, timeout=CALL_TIMEOUT).raise_for_status()
    answer = session.post(
        login,
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": login},
        timeout=CALL_TIMEOUT,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:300]
    return session


#: Every operation of the API, with a body where it takes one.
OPERATIONS = [
    ("GET", "/api/tokens", None),
    ("POST", "/api/tokens", {"name": "nobody-may"}),
    ("GET", "/api/tokens/1", None),
    ("POST", "/api/tokens/1/revoke", None),
    ("GET", "/api/usage", None),
    ("GET", "/api/reservations", None),
    ("POST", "/api/reservations", {"subdomain": "nobody-may", "token_id": 1}),
    ("DELETE", "/api/reservations/nobody-may", None),
    ("GET", "/api/tunnels", None),
    ("POST", "/api/tunnels/nobody-may/disconnect", None),
]


@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS)
def test_callers_without_a_right_get_401(
    api: Api, method: str, path: str, body: dict[str, str] | None
) -> None:
    wrong_key = "lmk_" + "A" * 40
    for key in (None, wrong_key, api.tunnel_token.value, "not-a-key"):
        answer = api.call(method, path, key, json=body)
        assert answer.status_code == 401, (key, answer.text)
    # A user who is not staff, with a valid session and CSRF token.
    session = api.plain_session
    headers = {"X-CSRFToken": session.cookies["csrftoken"]}
    answer = session.request(
        method, api.base + path, json=body, headers=headers, timeout=CALL_TIMEOUT
    )
    assert answer.status_code == 401, answer.text
    assert not api.call("GET", "/api/tokens", api.key).json() or all(
        t["name"] != "nobody-may" for t in api.call("GET", "/api/tokens", api.key).json()
    )


def test_a_staff_session_may_read_and_write_with_its_csrf_token(api: Api) -> None:
    session = _session(api, api.staff, STAFF_PASSWORD)
    assert session.get(f"{api.base}/api/tokens", timeout=CALL_TIMEOUT).status_code == 200
    name = f"by-staff-{secrets.token_hex(3)}"
    no_csrf = session.post(f"{api.base}/api/tokens", json={"name": name}, timeout=CALL_TIMEOUT)
    assert no_csrf.status_code == 403  # a page of another site cannot write
    with_csrf = session.post(
        f"{api.base}/api/tokens",
        json={"name": name},
        headers={"X-CSRFToken": session.cookies["csrftoken"]},
        timeout=CALL_TIMEOUT,
    )
    assert with_csrf.status_code == 201, with_csrf.text
    assert with_csrf.json()["name"] == name


def test_tokens_issue_show_list_and_revoke(api: Api) -> None:
    name = f"api-{secrets.token_hex(3)}"
    issued = api.call(
        "POST",
        "/api/tokens",
        api.key,
        json={"name": name, "allowed_cidrs": "127.0.0.0/8, ::1", "rate_limit": 600},
    )
    assert issued.status_code == 201, issued.text
    token = issued.json()
    assert token["token"].startswith("lmn_") and token["state"] == "active"
    assert (token["allowed_cidrs"], token["rate_limit"]) == ("127.0.0.0/8, ::1", 600)
    # The plaintext opens a tunnel, and is never shown again.
    raw = RawTunnel(api.server.ws_url, Token(name, token["token"]), None)
    try:
        assert raw.subdomain
    finally:
        raw.close()
    shown = api.call("GET", f"/api/tokens/{token['id']}", api.key).json()
    assert "token" not in shown and shown["name"] == name
    listed = api.call("GET", "/api/tokens", api.key).json()
    assert [t["id"] for t in listed if t["name"] == name] == [token["id"]]
    assert all("token" not in t and "digest" not in t for t in listed)

    again = api.call("POST", "/api/tokens", api.key, json={"name": name})
    assert again.status_code == 409
    assert "in use" in again.json()["detail"]

    revoked = api.call("POST", f"/api/tokens/{token['id']}/revoke", api.key)
    assert (revoked.status_code, revoked.json()["state"]) == (200, "revoked")
    assert api.call("GET", "/api/tokens/999999", api.key).status_code == 404
    assert api.call("POST", "/api/tokens/999999/revoke", api.key).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"name": "x", "allowed_cidrs": "10.0.0.0/33"}, 400, "allowed_cidrs"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, 400, "future"),
        ({"name": "   "}, 400, "blank"),
        ({"name": "x", "rate_limit": -1}, 422, ""),
        ({"name": ""}, 422, ""),
        ({}, 422, ""),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    api: Api, body: dict[str, object], status: int, says: str
) -> None:
    answer = api.call("POST", "/api/tokens", api.key, json=body)
    assert answer.status_code == status, answer.text
    assert says in answer.text


def test_reservations_reserve_list_and_release(api: Api) -> None:
    token = api.call("POST", "/api/tokens", api.key, json={"name": f"res-{secrets.token_hex(3)}"})
    token_id, token_name = token.json()["id"], token.json()["name"]
    name = f"kept-{secrets.token_hex(3)}"
    made = api.call(
        "POST", "/api/reservations", api.key, json={"subdomain": name, "token_id": token_id}
    )
    assert made.status_code == 201, made.text
    assert (made.json()["subdomain"], made.json()["token_name"]) == (name, token_name)
    listed = api.call("GET", "/api/reservations", api.key).json()
    assert [r["token_id"] for r in listed if r["subdomain"] == name] == [token_id]

    # A tunnel of another token cannot have it; its own token's can.
    other = api.tunnel_token
    refused = auth_reply(api.server.ws_url, other, name)
    assert isinstance(refused, protocol.AuthError) and "reserved" in refused.message, refused
    own = RawTunnel(
        api.server.ws_url, Token(token_name, token.json()["token"]), name, required=True
    )
    try:
        assert own.subdomain == name
    finally:
        own.close()

    taken = api.call(
        "POST", "/api/reservations", api.key, json={"subdomain": name, "token_name": other.name}
    )
    assert taken.status_code == 400 and "already reserved" in taken.text
    assert api.call("DELETE", f"/api/reservations/{name}", api.key).status_code == 204
    assert api.call("DELETE", f"/api/reservations/{name}", api.key).status_code == 404
    assert all(r["subdomain"] != name for r in api.call("GET", "/api/reservations", api.key).json())


def auth_reply(ws_url: str, token: Token, subdomain: str) -> protocol.Message:
    """What the server answers a tunnel that requires ``subdomain``."""
    ws = websocket.create_connection(ws_url, timeout=CALL_TIMEOUT)
    try:
        ws.send(
            protocol.encode(protocol.Auth(token=token.value, subdomain=subdomain, required=True))
        )
        return protocol.decode(ws.recv())
    finally:
        ws.close(timeout=2)
        ws.shutdown()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"subdomain": "Not_A_Label", "token_id": 1}, "subdomain"),
        ({"subdomain": "www", "token_id": 1}, "block list"),
        ({"subdomain": "fine-name"}, "exactly one"),
        ({"subdomain": "fine-name", "token_id": 999999}, "no token"),
        ({"subdomain": "fine-name", "token_name": "no-such-token"}, "no token"),
    ],
)
def test_bad_reservations_are_refused_with_a_reason(
    api: Api, body: dict[str, object], says: str
) -> None:
    answer = api.call("POST", "/api/reservations", api.key, json=body)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["detail"]


def test_usage_lists_rows_by_token_and_day(api: Api) -> None:
    answer = api.call("GET", "/api/usage?since=2026-01-01&until=2026-12-31", api.key)
    assert answer.status_code == 200
    assert isinstance(answer.json(), list)
    assert api.call("GET", "/api/usage?since=yesterday", api.key).status_code == 422


def test_the_openapi_description_is_served(api: Api) -> None:
    document = requests.get(f"{api.base}/api/openapi.json", timeout=CALL_TIMEOUT).json()
    paths = set(document["paths"])
    named = {p.replace("{token_id}", "1").replace("{subdomain}", "nobody-may") for p in paths}
    assert {path for _, path, _ in OPERATIONS} <= named
    assert {"ApiKeyAuth", "StaffSession"} <= set(document["components"]["securitySchemes"])


def test_schemathesis_finds_no_server_error(api: Api, tmp_path: Path) -> None:
    """Property-based calls to every operation, with the API key: never a 500."""
    done = subprocess.run(
        [
            str(Path(PYTHON).parent / "schemathesis"),
            "run",
            f"{api.base}/api/openapi.json",
            "--header",
            f"Authorization: Bearer {api.key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
