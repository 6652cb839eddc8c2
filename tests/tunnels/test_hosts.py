"""Sorting Host headers into the main host, tunnel hosts and strangers."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tunnels.hosts import MainHost, TunnelHost, classify, public_url
from tunnelsite.settings import parse_bind, parse_database_url, parse_public_url


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("tunnel.example.com", MainHost()),
        ("Tunnel.Example.COM:443", MainHost()),
        ("x7f2k1.tunnel.example.com", TunnelHost("x7f2k1")),
        ("X7F2K1.tunnel.example.com:8443", TunnelHost("x7f2k1")),
        ("x7f2k1.tunnel.example.com.", TunnelHost("x7f2k1")),
        ("a.b.tunnel.example.com", None),
        ("-bad.tunnel.example.com", None),
        ("x_y.tunnel.example.com", None),
        ("eviltunnel.example.com", None),
        ("example.com", None),
        ("x7f2k1.tunnel.example.com.evil.org", None),
        ("", None),
        ("127.0.0.1:8000", None),
    ],
)
def test_classify(host, expected):
    """Only the main host and one label under it are ours."""
    with override_settings(LUMINET_TUNNEL_DOMAIN="tunnel.example.com"):
        assert classify(host) == expected


def test_public_url_keeps_scheme_and_port():
    """Public URLs follow LUMINET_PUBLIC_URL's scheme and port."""
    with override_settings(
        LUMINET_PUBLIC_SCHEME="https",
        LUMINET_TUNNEL_DOMAIN="t.example.com",
        LUMINET_PUBLIC_PORT=None,
    ):
        assert public_url("abc123") == "https://abc123.t.example.com"
    with override_settings(
        LUMINET_PUBLIC_SCHEME="http", LUMINET_TUNNEL_DOMAIN="localhost", LUMINET_PUBLIC_PORT=8000
    ):
        assert public_url("abc123") == "http://abc123.localhost:8000"


@pytest.mark.parametrize(
    "value", ["ftp://x.example.com", "https://", "https://x.example.com/path", "x.example.com"]
)
def test_bad_public_url_names_the_variable(value):
    """A malformed LUMINET_PUBLIC_URL is refused with the variable's name."""
    with pytest.raises(ImproperlyConfigured, match="LUMINET_PUBLIC_URL"):
        parse_public_url(value)


def test_database_urls():
    """SQLite and PostgreSQL URLs become Django database settings."""
    assert parse_database_url("sqlite:////var/lib/l.db")["NAME"] == "/var/lib/l.db"
    assert parse_database_url("sqlite:///rel.db")["NAME"] == "rel.db"
    pg = parse_database_url("postgres://u:p%40ss@db.internal:5433/luminet")
    assert (pg["ENGINE"], pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "django.db.backends.postgresql",
        "luminet",
        "u",
        "p@ss",
        "db.internal",
        "5433",
    )
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        parse_database_url("mysql://x/y")


def test_metrics_bind_takes_an_address_and_a_port():
    assert parse_bind("X", "127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_bind("X", "[::1]:9464") == ("::1", 9464)


@pytest.mark.parametrize("value", ["127.0.0.1", ":9464", "127.0.0.1:http", "127.0.0.1:70000"])
def test_bad_metrics_bind_names_the_variable(value):
    with pytest.raises(ImproperlyConfigured, match="LUMINET_METRICS_BIND"):
        parse_bind("LUMINET_METRICS_BIND", value)
