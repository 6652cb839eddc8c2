"""Databases for the tests and the bench: a PostgreSQL database of one's own on a shared
server, and SQL run against a server's database whichever kind it is.

The PostgreSQL at 127.0.0.1:5432 is shared (other test runs, other engineers), so
nothing here touches a database it did not create: each run creates one named
``<tag>_<pid>_<random>`` and drops it when done. A run that was killed cannot drop
its own; the next run with the same tag drops those whose creating process is gone
and to which nobody is connected, and never any other.
"""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from .errors import HarnessError

#: The shared server's maintenance database, as the machine's PostgreSQL has it
#: (user postgres, trust authentication on loopback).
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Seconds to connect to PostgreSQL before calling it unreachable.
CONNECT_TIMEOUT = 5


def execute(url: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the database of ``url`` (a server's ``DATABASE_URL``),
    committed; return its rows (none for a statement without).

    ``statement`` uses ``%s`` placeholders on both kinds of database.
    """
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10) as db:
            cursor = db.execute(statement.replace("%s", "?"), tuple(params))
            rows = cursor.fetchall()
        db.close()  # the context manager commits; it does not close
        return rows
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as pg:
        result = pg.execute(statement, tuple(params))  # type: ignore[arg-type]
        return result.fetchall() if result.description else []


class PostgresDatabase:
    """A database of one's own on a shared PostgreSQL; ``close()`` drops it."""

    def __init__(self, tag: str, admin_url: str = POSTGRES_ADMIN_URL) -> None:
        """Create the database, after dropping this tag's leftovers of dead runs; raise
        HarnessError if PostgreSQL does not answer."""
        if not re.fullmatch(r"[a-z][a-z0-9]*", tag):
            raise HarnessError(f"a database tag is lower-case letters and digits, not {tag!r}")
        self.tag = tag
        self.name = f"{tag}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._admin_url = admin_url
        self.dropped_leftovers = self._drop_leftovers()
        self._run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    @property
    def url(self) -> str:
        """The database's URL on the same server, as DATABASE_URL takes it."""
        base, _, _ = self._admin_url.rpartition("/")
        return f"{base}/{self.name}"

    def connections(self, application_name: str | None = None) -> int:
        """Backends connected to this database now (from one application only, if named)."""
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        params: list[str] = [self.name]
        if application_name is not None:
            query += " AND application_name = %s"
            params.append(application_name)
        rows = execute(self._admin_url, query, params)
        return int(rows[0][0])

    def close(self) -> None:
        """Drop the database, ending what is still connected to it (a server killed mid-test)."""
        self._run(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
        )

    def _drop_leftovers(self) -> list[str]:
        """Drop this tag's databases whose creating process is gone and that nobody uses."""
        pattern = re.compile(rf"{self.tag}_(\d+)_[0-9a-f]{{8}}")
        rows = self._run(sql.SQL("SELECT datname FROM pg_database"))
        dropped = []
        for (name,) in rows:
            match = pattern.fullmatch(name)
            if match is None or _alive(int(match[1])):
                continue
            try:
                # Without FORCE: a database someone is connected to is not a leftover.
                self._run(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
            except HarnessError:
                continue
            dropped.append(name)
        return dropped

    def _run(self, statement: sql.SQL | sql.Composed) -> list[tuple[Any, ...]]:
        try:
            # CREATE and DROP DATABASE cannot run inside a transaction: autocommit.
            with psycopg.connect(
                self._admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            ) as db:
                cursor = db.execute(statement)
                return cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError as exc:
            raise HarnessError(f"PostgreSQL at {self._admin_url}: {exc}".strip()) from exc
        except psycopg.Error as exc:
            raise HarnessError(f"PostgreSQL refused {statement!r}: {exc}") from exc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
