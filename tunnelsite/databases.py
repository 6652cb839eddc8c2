"""``DATABASE_URL`` as Django's database settings: SQLite for the embedded default,
PostgreSQL (through psycopg 3) for deployments of several processes.

PostgreSQL URLs take what libpq's own URIs take: ``postgres://user:password@host:port/name``
with every part percent-encoded (``p%40ss`` for ``p@ss``), several hosts
(``h1:5432,h2:5432``, tried in turn), a socket directory as the host
(``%2Frun%2Fpostgresql``, or ``?host=/run/postgresql``) and libpq's connection
parameters as the query (``?sslmode=verify-full&connect_timeout=5&application_name=web1``).
A parameter libpq does not know is refused here, naming the variable, rather than
at the first connection.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "pgsql"})
#: Seconds to wait for PostgreSQL to accept a connection, unless the URL says
#: otherwise: a database that is down must fail a request, not hang its thread for
#: the system's TCP timeout (minutes).
CONNECT_TIMEOUT = 10
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
#: Query parameters that stand for a part of the URL; given in the query, they fill it.
_URL_PARTS = {
    "host": "HOST",
    "port": "PORT",
    "user": "USER",
    "password": "PASSWORD",
    "dbname": "NAME",
}


def _bad(problem: str) -> ImproperlyConfigured:
    # Never the URL itself: it may carry a password.
    return ImproperlyConfigured(f"DATABASE_URL: {problem}")


def parse_database_url(value: str) -> dict[str, object]:
    """Turn DATABASE_URL (``sqlite:///path`` or ``postgres://…``) into a Django database."""
    try:
        parts = urlsplit(value)
    except ValueError:  # an unbalanced "[" or "]"
        raise _bad("an IPv6 host must be written [address] or [address]:port") from None
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db, as dj-database-url reads them.
        name = unquote(parts.path)[1:]
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name or ":memory:"}
    if parts.fragment:
        raise _bad("a '#' in it must be written %23")
    if parts.scheme in POSTGRES_SCHEMES:
        return _postgres(parts.netloc, parts.path, parts.query)
    raise _bad(f"must start with sqlite:// or postgres://, not {parts.scheme or 'nothing'}")


def _postgres(netloc: str, path: str, query: str) -> dict[str, object]:
    userinfo, _, hostlist = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, port = _hosts(hostlist)
    if "/" in path.strip("/"):
        raise _bad("the database name is the path's only part (postgres://host/name)")
    fields: dict[str, str] = {
        "NAME": unquote(path.strip("/")),
        "USER": unquote(user),
        "PASSWORD": unquote(password),
        "HOST": host,
        "PORT": port,
    }
    options, from_query = _options(query)
    for field, given in from_query.items():
        if fields[field]:
            raise _bad(f"{field.lower()} is given twice, in the URL and in its query")
        fields[field] = given
    if fields["PORT"] and not all(_is_port(p) for p in fields["PORT"].split(",")):
        raise _bad("a port must be a number from 1 to 65535")
    if not fields["NAME"] and "service" not in options:
        raise _bad("no database name: postgres://user@host:5432/name")
    return {
        "ENGINE": "django.db.backends.postgresql",
        **fields,
        # A connection per request (or per tunnel authentication), closed at its end.
        # daphne runs the ORM in a thread per request (and one shared thread for
        # the consumers): a persistent connection would stay open in a thread that
        # has ended, one more per request, until PostgreSQL's max_connections is
        # reached (Django ticket #33497). Health checks apply only to persistent ones.
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "OPTIONS": options,
    }


def _is_port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 65536


def _hosts(hostlist: str) -> tuple[str, str]:
    """``h1:5432,[::1]:5433`` as libpq's HOST and PORT lists (``h1,::1`` and ``5432,5433``)."""
    if not hostlist:
        return "", ""
    hosts: list[str] = []
    ports: list[str] = []
    for item in hostlist.split(","):
        if item.startswith("["):  # an IPv6 address, with its port after the bracket
            host, bracket, rest = item[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise _bad("an IPv6 host must be written [address] or [address]:port")
            port = rest[1:]
        else:
            host, _, port = item.partition(":")
        if not host:
            raise _bad("a host is empty")
        # Not lower-cased: a percent-encoded socket directory keeps its case.
        hosts.append(unquote(host))
        ports.append(port)
    if not any(ports):
        return ",".join(hosts), ""
    if len(set(ports)) == 1 and all(ports):
        return ",".join(hosts), ports[0]
    # libpq takes one port for all hosts or one per host: the default where none is given.
    return ",".join(hosts), ",".join(port or "5432" for port in ports)


def _options(query: str) -> tuple[dict[str, object], dict[str, str]]:
    """The query's libpq connection parameters, and apart from them those that stand
    for a part of the URL (``?host=/run/postgresql``), by Django's name for it."""
    known = _libpq_keywords()
    options: dict[str, object] = {"connect_timeout": CONNECT_TIMEOUT}
    fields: dict[str, str] = {}
    seen: set[str] = set()
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _bad("the query must be name=value pairs joined by &") from None
    for name, value in pairs:
        if name in seen:
            raise _bad(f"{name} is given twice")
        seen.add(name)
        if name in _URL_PARTS:
            fields[_URL_PARTS[name]] = value
        elif name not in known:
            raise _bad(f"{name!r} is not a PostgreSQL connection parameter")
        elif name == "sslmode" and value not in SSL_MODES:
            raise _bad(f"sslmode must be one of {', '.join(sorted(SSL_MODES))}")
        else:
            options[name] = value
    return options, fields


def _libpq_keywords() -> frozenset[str]:
    """The connection parameters the installed libpq knows (``sslmode``, ``options`` …)."""
    from psycopg import pq  # only deployments on PostgreSQL need it

    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())
