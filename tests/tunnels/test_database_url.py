"""DATABASE_URL as Django's database settings (``tunnelsite.databases``); no database needed."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from tunnelsite.databases import CONNECT_TIMEOUT, parse_database_url


def fields(url: str) -> tuple[object, ...]:
    db = parse_database_url(url)
    return db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]


def test_a_postgres_url_with_every_part() -> None:
    """User, password, host, port and name, each percent-decoded, with psycopg's backend."""
    db = parse_database_url(
        "postgresql://lum%20inet:p%40ss%3Aw%2Fo%25rd+x@db.internal:5433/lum%2Dnet"
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert fields("postgresql://lum%20inet:p%40ss%3Aw%2Fo%25rd+x@db.internal:5433/lum%2Dnet") == (
        "lum-net",
        "lum inet",
        "p@ss:w/o%rd+x",
        "db.internal",
        "5433",
    )


def test_a_password_may_hold_an_unencoded_colon_and_at_sign_before_the_host() -> None:
    """The host starts after the last ``@``; the password after the first ``:``."""
    assert fields("postgres://u:a:b@c@host/db")[1:4] == ("u", "a:b@c", "host")


def test_the_short_schemes_and_defaults() -> None:
    """postgres:// and pgsql:// too; no user, password or port leaves libpq's defaults."""
    assert fields("postgres://localhost/luminet") == ("luminet", "", "", "localhost", "")
    assert fields("pgsql://localhost/luminet")[0] == "luminet"


def test_ipv6_and_several_hosts() -> None:
    """A bracketed IPv6 host, and a host list that libpq tries in turn."""
    assert fields("postgres://u@[::1]:5432/db")[3:] == ("::1", "5432")
    assert fields("postgres://u@a:5432,b:5432/db")[3:] == ("a,b", "5432")
    assert fields("postgres://u@a:5432,[2001:db8::1]:6432/db")[3:] == ("a,2001:db8::1", "5432,6432")
    assert fields("postgres://u@a,b:6432/db")[3:] == ("a,b", "5432,6432")
    assert fields("postgres://u@a,b/db")[3:] == ("a,b", "")


def test_a_socket_directory_as_the_host() -> None:
    """Percent-encoded in the host (its case kept) or given as ``?host=``."""
    assert fields("postgres://u@%2Frun%2FPostgreSQL/db")[3] == "/run/PostgreSQL"
    assert fields("postgres:///db?host=/run/postgresql&port=5433")[3:] == (
        "/run/postgresql",
        "5433",
    )


def test_the_query_carries_libpq_parameters() -> None:
    """sslmode and any other libpq parameter go to psycopg as they are."""
    db = parse_database_url(
        "postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        "&application_name=web1&options=-c%20statement_timeout%3D5000&target_session_attrs=read-write"
    )
    assert db["OPTIONS"] == {
        "connect_timeout": CONNECT_TIMEOUT,
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ca.pem",
        "application_name": "web1",
        "options": "-c statement_timeout=5000",
        "target_session_attrs": "read-write",
    }


def test_connect_timeout_defaults_to_a_bound_and_can_be_set() -> None:
    assert parse_database_url("postgres://h/db")["OPTIONS"] == {"connect_timeout": CONNECT_TIMEOUT}
    assert parse_database_url("postgres://h/db?connect_timeout=3")["OPTIONS"] == {
        "connect_timeout": "3"
    }


def test_connections_are_not_persistent() -> None:
    """daphne's threads would each keep one open (see tunnelsite.databases)."""
    db = parse_database_url("postgres://h/db")
    assert (db["CONN_MAX_AGE"], db["CONN_HEALTH_CHECKS"]) == (0, False)


def test_a_service_file_entry_needs_no_name() -> None:
    assert parse_database_url("postgres://?service=luminet")["OPTIONS"] == {
        "connect_timeout": CONNECT_TIMEOUT,
        "service": "luminet",
    }


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://x/y", "sqlite:// or postgres://"),
        ("postgres://h", "no database name"),
        ("postgres://h/a/b", "only part"),
        ("postgres://h:99999/db", "port"),
        ("postgres://h:x/db", "port"),
        ("postgres:///db?port=0", "port"),
        ("postgres://[::1/db", "IPv6"),
        ("postgres://h,/db", "host is empty"),
        ("postgres://h/db?sslmode=yes", "sslmode"),
        ("postgres://h/db?ssl=true", "'ssl' is not a PostgreSQL connection parameter"),
        ("postgres://h/db?sslmode=require&sslmode=disable", "twice"),
        ("postgres://h/db?host=other", "given twice"),
        ("postgres://h/db?novalue", "name=value"),
        ("postgres://u:pa#ss@h/db", "%23"),
    ],
)
def test_a_bad_url_is_refused_naming_the_variable(url: str, problem: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL") as refused:
        parse_database_url(url)
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:s3cr3t@h:x/db",
        "postgres://u:s3cr3t@h/db?password=s3cr3t",
        "mysql://u:s3cr3t@h/db",
    ],
)
def test_a_refusal_never_shows_the_password(url: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        parse_database_url(url)
    assert "s3cr3t" not in str(refused.value)


def test_sqlite_urls() -> None:
    assert parse_database_url("sqlite:////var/lib/l.db")["NAME"] == "/var/lib/l.db"
    assert parse_database_url("sqlite:///rel.db")["NAME"] == "rel.db"
    assert parse_database_url("sqlite://")["NAME"] == ":memory:"
