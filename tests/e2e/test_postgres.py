"""The server on PostgreSQL, production's database: psycopg 3 drives it, every option of
DATABASE_URL reaches the connection, and one server process holds a bounded number of
connections however many requests, tunnels and usage flushes it serves (PostgreSQL
allows 100 by default, shared by every process of a deployment)."""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from harness import HarnessError, PostgresDatabase, execute, manage

from . import rawclient
from .conftest import POSTGRES_TAG, Database, Launcher, Layer, Server, Token, last_line, required
from .localserver import LocalServer, Reply
from .rawtunnel import RawTunnel
from .test_operator import staff_session

pytestmark = pytest.mark.timeout(120)

#: Rounds of mixed work (a tunnel opened and closed, admin and API pages, public
#: requests): a connection leaked per request would show as dozens.
ROUNDS = 40
#: Rounds in flight at once.
CONCURRENCY = 4
#: Connections a server process may hold while serving CONCURRENCY rounds at once:
#: one per request in flight (Django runs each in a thread of its own), the
#: consumers' shared thread and the usage flusher's, with room for backends that
#: are still exiting. Measured: 5 (persistent connections instead: 19, and 13 left
#: open when idle).
PEAK_BOUND = 2 * CONCURRENCY + 2
#: Connections it may keep once idle: the consumers' shared thread may keep one.
IDLE_BOUND = 1
#: Seconds for the connections to close once the work is done.
SETTLE = 10.0


def with_options(database: Database, **options: str) -> Database:
    return Database(f"{database.url}?{'&'.join(f'{k}={v}' for k, v in options.items())}")


def test_psycopg_3_drives_postgresql_with_every_option_of_the_url(
    postgres_database: Database, uid: str
) -> None:
    """The driver is psycopg 3, and the URL's query reaches the session: its application
    name, its sslmode and libpq's ``options`` (a server setting)."""
    database = with_options(
        postgres_database,
        application_name=f"lm-{uid}",
        sslmode="disable",
        options="-c%20statement_timeout%3D4321",
    )
    shown = manage(
        "shell",
        "-c",
        "from django.db import connection\n"
        "cursor = connection.cursor()\n"
        "cursor.execute(\"SELECT current_setting('application_name'), "
        "current_setting('statement_timeout')\")\n"
        "print(connection.Database.__name__, connection.vendor, *cursor.fetchone())",
        env=database.env,
    )
    assert shown.stdout.splitlines()[-1].split() == ["psycopg", "postgresql", f"lm-{uid}", "4321ms"]


def test_an_id_beyond_postgresqls_integers_is_not_found_not_an_error(
    postgres_database: Database, tmp_path: Path
) -> None:
    """The admin API's ids are bigints on PostgreSQL (SQLite takes anything): a larger id
    in a path finds nothing instead of failing the query."""
    issued = manage(
        "issue_api_key", "--name", f"pg-{secrets.token_hex(3)}", env=postgres_database.env
    )
    key = last_line(issued.stdout)
    launcher = Launcher(postgres_database, Layer("memory", {}), tmp_path)
    try:
        server = launcher.server(name="pg-ids")
        for token_id in (2**63, 10**30):
            answer = requests.get(
                f"http://localhost:{server.port}/api/tokens/{token_id}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            assert answer.status_code == 404, answer.text[:300]
    finally:
        launcher.close()


@dataclass
class Peak:
    """The most connections seen from one application, sampled until stopped."""

    database: PostgresDatabase
    application: str
    most: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.most = max(self.most, self.database.connections(self.application))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.most


@pytest.fixture
def counted_database() -> Iterator[PostgresDatabase]:
    """A database of its own, so that only this test's server connects to it."""
    try:
        created = PostgresDatabase(POSTGRES_TAG)
    except HarnessError as exc:
        required("PostgreSQL", str(exc))
    try:
        manage("migrate", "--noinput", env=Database(created.url).env)
        yield created
    finally:
        created.close()


def test_a_server_process_holds_a_bounded_number_of_connections(
    counted_database: PostgresDatabase,
    redis_env: dict[str, str],
    local_server: LocalServer,
    tmp_path: Path,
    uid: str,
) -> None:
    """Tunnels opened and closed, their token re-checked at each heartbeat, admin pages,
    API calls and public requests whose usage is flushed: while they run, the server's
    connections stay within a few per request in flight; once idle, they are closed."""
    application = f"lm-{uid}"
    database = with_options(Database(counted_database.url), application_name=application)
    token = database.issue_token("pg-bounded")
    key = manage("issue_api_key", "--name", f"pg-{uid}", env=database.env).stdout.split()[-1]
    launcher = Launcher(database, Layer("redis", redis_env), tmp_path / "home")
    try:
        server = launcher.server(
            name="pg-server", LUMINET_HEARTBEAT_INTERVAL="0.3", LUMINET_USAGE_FLUSH_SECONDS="0.2"
        )
        base = f"http://localhost:{server.port}"
        staff = staff_session(database, base)
        client = launcher.client(server, token, local_server.port, name="pg-client")
        _, _, subdomain = client.wait_active()
        local_server.route(f"/{uid}/page", Reply(body=b"p" * 100))
        peak = Peak(counted_database, application)
        try:
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                for done in [
                    pool.submit(one_round, server, token, subdomain, base, staff, key, uid)
                    for _ in range(ROUNDS)
                ]:
                    done.result()
        finally:
            most = peak.stop()
        assert most <= PEAK_BOUND, f"{most} connections at once"
        assert settled(counted_database, application) <= IDLE_BOUND, launcher.describe()
    finally:
        launcher.close()
    assert counted_database.connections() == 0, "the stopped server left connections open"


def one_round(
    server: Server,
    token: Token,
    subdomain: str,
    base: str,
    staff: requests.Session,
    key: str,
    uid: str,
) -> None:
    raw = RawTunnel(server.ws_url, token)  # authentication and a reservation lookup
    try:
        assert raw.subdomain
    finally:
        raw.close()
    answer = rawclient.request(server.port, "GET", f"/{uid}/page", f"{subdomain}.localhost")
    assert answer.status == 200  # counted, and flushed by the usage thread
    api = requests.get(f"{base}/api/tokens", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert api.status_code == 200, api.text[:300]
    page = staff.get(f"{base}/admin/tokens/token/", timeout=10)
    assert page.status_code == 200 and token.name in page.text


def settled(database: PostgresDatabase, application: str) -> int:
    """The application's connections once they stop falling (SETTLE seconds at most)."""
    deadline = time.monotonic() + SETTLE
    count = database.connections(application)
    while count > IDLE_BOUND and time.monotonic() < deadline:
        time.sleep(0.1)  # polling pg_stat_activity
        count = database.connections(application)
    return count


def test_leftovers_of_dead_runs_are_dropped_and_nothing_else(
    postgres_database: Database,
) -> None:
    """A database of this tag whose creating process is gone is dropped by the next run;
    one whose process lives, or of another tag, is kept."""
    tag = "lmharness"
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = f"{tag}_{dead.pid}_{secrets.token_hex(4)}"
    alive = f"{tag}_{os.getpid()}_{secrets.token_hex(4)}"
    other = f"lmother_{dead.pid}_{secrets.token_hex(4)}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    for name in (leftover, alive, other):
        execute(admin, f'CREATE DATABASE "{name}"')
    try:
        created = PostgresDatabase(tag)
        created.close()
        assert created.dropped_leftovers == [leftover]
        names = {row[0] for row in execute(admin, "SELECT datname FROM pg_database")}
        assert (leftover in names, alive in names, other in names) == (False, True, True)
    finally:
        for name in (leftover, alive, other):
            execute(admin, f'DROP DATABASE IF EXISTS "{name}"')
