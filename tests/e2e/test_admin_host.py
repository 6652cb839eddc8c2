"""The admin's cookies and host against a real server: host-only, Secure and __Host-
over https, SameSite=Lax, the session HttpOnly; with LUMINET_ADMIN_HOST, the admin,
the API and the metrics answer on that host alone."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from harness import Server, manage, serve_argv

from . import rawclient
from .conftest import Database, Launcher, Layer, migrated_database

pytestmark = pytest.mark.timeout(90)

PASSWORD = "admin-" + secrets.token_hex(8)
USERNAME = "operator"


@pytest.fixture(scope="module")
def admin_database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """A database of its own, with a superuser."""
    database = migrated_database(tmp_path_factory)
    env = {**database.env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    manage("createsuperuser", "--noinput", "--username", USERNAME, "--email", "a@x.test", env=env)
    return database


@pytest.fixture
def launcher(admin_database: Database, tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(admin_database, Layer("memory", {}), tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()


def set_cookies(response: rawclient.Response) -> dict[str, dict[str, str | bool]]:
    """Each Set-Cookie by name: its attributes, lower-cased, as the browser reads them."""
    cookies: dict[str, dict[str, str | bool]] = {}
    for line in response.values("Set-Cookie"):
        name_value, *attributes = (part.strip() for part in line.split(";"))
        name, _, value = name_value.partition("=")
        parsed: dict[str, str | bool] = {"value": value}
        for attribute in attributes:
            key, equals, attr_value = attribute.partition("=")
            parsed[key.lower()] = attr_value if equals else True
        cookies[name] = parsed
    return cookies


def test_login_cookies_on_an_https_public_url_are_host_only_secure_and_lax(
    launcher: Launcher,
) -> None:
    """Logging in behind an https proxy sets __Host-csrftoken and __Host-sessionid:
    no Domain, Path=/, Secure, SameSite=Lax, and the session HttpOnly; they work."""
    env = launcher.server_env(LUMINET_PUBLIC_URL="https://localhost")
    server = Server("https-server", [*serve_argv(0), "--proxy-headers"], env)
    try:
        server.wait_ready()
        https = [("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "192.0.2.7")]
        form = rawclient.request(server.port, "GET", "/admin/login/", "localhost", https)
        assert form.status == 200
        csrf = set_cookies(form)["__Host-csrftoken"]
        body = urlencode(
            {
                "username": USERNAME,
                "password": PASSWORD,
                "csrfmiddlewaretoken": csrf["value"],
                "next": "/admin/",
            }
        ).encode()
        login = rawclient.request(
            server.port,
            "POST",
            "/admin/login/",
            "localhost",
            [
                *https,
                ("Origin", "https://localhost"),
                ("Referer", "https://localhost/admin/login/"),
                ("Cookie", f"__Host-csrftoken={csrf['value']}"),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Content-Length", str(len(body))),
            ],
            body,
        )
        assert login.status == 302, login.body[:500]
        cookies = set_cookies(login)
        session = cookies["__Host-sessionid"]
        assert session.get("httponly") is True
        for cookie in (csrf, session, cookies.get("__Host-csrftoken", csrf)):
            assert "domain" not in cookie
            assert cookie.get("secure") is True
            assert cookie.get("samesite") == "Lax"
            assert cookie.get("path") == "/"
        assert "sessionid" not in cookies and "csrftoken" not in set_cookies(form)
        jar = SimpleCookie()
        jar["__Host-sessionid"] = str(session["value"])
        index = rawclient.request(
            server.port,
            "GET",
            "/admin/",
            "localhost",
            [*https, ("Cookie", jar.output(header="", attrs=[]).strip())],
        )
        assert index.status == 200
        assert b"Site administration" in index.body
    finally:
        server.stop()


ADMIN_PATHS = ("/admin/login/", "/api/openapi.json", "/metrics")


def test_with_an_admin_host_the_admin_api_and_metrics_answer_there_alone(
    launcher: Launcher,
) -> None:
    """With LUMINET_ADMIN_HOST, /admin/, /api/ and /metrics are 404 on the main host and
    served on the admin host; the landing page, /health and static files stay."""
    server = launcher.server(name="admin-host-server", LUMINET_ADMIN_HOST="admin.test")
    admin_host = f"admin.test:{server.port}"
    main_host = f"localhost:{server.port}"
    for path in ADMIN_PATHS:
        assert rawclient.request(server.port, "GET", path, main_host).status == 404, path
    login = rawclient.request(server.port, "GET", "/admin/login/", admin_host)
    assert login.status == 200
    assert b"Log in" in login.body
    assert rawclient.request(server.port, "GET", "/api/openapi.json", admin_host).status == 200
    assert rawclient.request(server.port, "GET", "/metrics", admin_host).status == 401
    root = rawclient.request(server.port, "GET", "/", admin_host)
    assert (root.status, root.value("Location")) == (302, "/admin/")

    landing = rawclient.request(server.port, "GET", "/", main_host)
    assert landing.status == 200
    # The public URL (http://localhost) has no port: the admin's URL takes the same.
    assert b'href="http://admin.test/admin/"' in landing.body
    for host in (main_host, admin_host):
        assert rawclient.request(server.port, "GET", "/health", host).status == 200
        stylesheet = rawclient.request(server.port, "GET", "/static/admin/css/base.css", host)
        assert stylesheet.status == 200


def test_without_an_admin_host_the_main_host_serves_the_admin(launcher: Launcher) -> None:
    """Unset, the main host serves the admin, the API and the metrics, and no other host
    does."""
    server = launcher.server(name="one-host-server")
    main_host = f"localhost:{server.port}"
    assert rawclient.request(server.port, "GET", "/admin/login/", main_host).status == 200
    assert rawclient.request(server.port, "GET", "/api/openapi.json", main_host).status == 200
    assert rawclient.request(server.port, "GET", "/metrics", main_host).status == 401
    other = rawclient.request(server.port, "GET", "/admin/login/", f"admin.test:{server.port}")
    assert other.status == 400
