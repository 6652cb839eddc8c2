"""The deployment on one machine: Caddy with its own CA in front of daphne processes on Redis.

:class:`Stack` starts what ``deploy/`` describes for production, on loopback and
high ports: Redis (the shared one at ``redis_url`` under a key prefix of its own,
or, when none answers, a private ``redis-server``), a migrated database with the
admin's static files collected, ``processes`` daphne processes (``manage.py
serve``, ``DEBUG`` off, ``LUMINET_TRUSTED_PROXIES`` naming Caddy) and Caddy on
``deploy/Caddyfile.local`` (``tls internal``), which load-balances over them.
Clients reach the server through Caddy, trusting its CA.

With ``redis_url=None`` the stack is one process on the in-memory layer instead
(the embedded default behind Caddy: the bench's baseline for the deployment).

``make stack`` runs :func:`main` for a person, with a client for a local port;
``tests/e2e/test_caddy.py`` and the bench (``bench/caddy.py``) start the same
pieces through the same class.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from .caddy import Caddy, free_port
from .clients import Client
from .commands import manage
from .errors import HarnessError
from .process import PYTHON, ROOT, Process, clean_environ
from .redis import KeyPrefix, PrivateRedis
from .servers import Server, serve_argv

#: The main host; tunnels are ``<sub>.luminet.localhost``, which browsers and curl
#: resolve to loopback by themselves.
DOMAIN = "luminet.localhost"
#: The shared Redis a stack uses unless told otherwise (its keys under a prefix of its own).
REDIS_URL = "redis://127.0.0.1:6379"
#: Where ``make stack`` keeps its state: the database, Caddy's CA, the client's HOME.
STACK_DIR = ROOT / "var" / "stack"
#: The client's text line once its tunnel is up, with the public URL.
ACTIVE_RE = r"^Tunnel active: (https://\S+)$"
#: Seconds between two looks at the client's output while ``make stack`` runs.
FOLLOW_INTERVAL = 0.2


class Stack:
    """Redis, a database, ``processes`` daphne processes and Caddy, started by ``start()``
    and stopped, with every client started through :meth:`client`, by ``stop()``."""

    def __init__(
        self,
        directory: Path,
        *,
        domain: str = DOMAIN,
        https_port: int | None = None,
        processes: int = 2,
        redis_url: str | None = REDIS_URL,
        database_url: str | None = None,
        secret_key: str | None = None,
        settings: Mapping[str, str] | None = None,
        logdir: Path | None = None,
        setup: bool = True,
    ) -> None:
        """``settings`` are more server settings (``LUMINET_*``); ``logdir`` keeps every
        process's output in files there instead of memory (a stack that runs for hours).
        ``redis_url=None``: the in-memory layer, which one process alone can use.
        ``setup=False``: the database is migrated already and no static files are
        served (the bench), which saves two ``manage.py`` runs."""
        if redis_url is None and processes != 1:
            raise HarnessError("the in-memory layer serves one process: processes=1")
        self.directory = directory
        self.domain = domain
        self.https_port = https_port or free_port()
        self.processes = processes
        self.redis_url = redis_url
        self.database_url = database_url or f"sqlite:///{directory / 'db.sqlite3'}"
        self.secret_key = secret_key or secrets.token_urlsafe(50)
        self.settings = dict(settings or {})
        self.logdir = logdir
        self.setup = setup
        self.servers: list[Server] = []
        self.caddy: Caddy | None = None
        self.keys: KeyPrefix | None = None
        self.private_redis: PrivateRedis | None = None
        #: The servers' channel-layer settings once started: Redis' URL and prefix, or
        #: nothing (the in-memory layer).
        self._layer_env: dict[str, str] | None = None
        self._clients: list[Client] = []

    # -- what the stack offers -------------------------------------------------------

    @property
    def public_url(self) -> str:
        """The main host through Caddy: ``https://luminet.localhost:<port>``."""
        return f"https://{self.domain}:{self.https_port}"

    @property
    def server_url(self) -> str:
        """What a client's ``--server`` says: ``localhost`` resolves everywhere, unlike
        ``*.localhost``, and the tunnel endpoint answers on any host but a tunnel's."""
        return f"https://localhost:{self.https_port}"

    @property
    def ca(self) -> Path:
        """The root certificate of Caddy's local CA."""
        return self.directory / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    @property
    def env(self) -> dict[str, str]:
        """The servers' environment, for ``manage.py`` commands on the same database."""
        if self._layer_env is None:
            raise HarnessError("the stack is not started")
        return clean_environ(
            {
                "DEBUG": "false",
                "SECRET_KEY": self.secret_key,
                "DATABASE_URL": self.database_url,
                **self._layer_env,
                "LUMINET_PUBLIC_URL": self.public_url,
                # Caddy connects from loopback; only it may name callers and schemes.
                "LUMINET_TRUSTED_PROXIES": "127.0.0.1/32, ::1/128",
                "LUMINET_STATIC_ROOT": str(self.directory / "static"),
                **self.settings,
            }
        )

    def manage(self, *args: str) -> str:
        """Run a ``manage.py`` command on the stack's database; return its stdout."""
        return manage(*args, env=self.env).stdout

    def client(
        self,
        token: str,
        local_port: int,
        *,
        name: str = "client",
        args: Sequence[str] = (),
        log_format: str = "json",
        home: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Client:
        """Start a client through Caddy (trusting its CA) for ``local_port``.

        Each ``name`` has a HOME of its own (unless ``home`` says otherwise), so clients
        of one stack never share the names they remember (``~/.tunnel/names``).
        """
        if home is None:
            home = self.directory / "home" / name
            home.mkdir(parents=True, exist_ok=True)
        client = Client(
            server_url=self.server_url,
            local_port=local_port,
            token=token,
            home=home,
            name=name,
            args=args,
            log_format=log_format,
            logdir=self.logdir,
            env={"SSL_CERT_FILE": str(self.ca), **(env or {})},
        )
        self._clients.append(client)
        return client

    def describe(self) -> str:
        processes: list[Process] = [*self.servers, *self._clients]
        if self.caddy is not None:
            processes.append(self.caddy)
        return "\n".join(process.describe() for process in processes)

    # -- starting and stopping -------------------------------------------------------

    def start(self) -> None:
        """Start everything, in order, each once the one before is ready; on a failure,
        stop what started and raise HarnessError."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.logdir is not None:
            self.logdir.mkdir(parents=True, exist_ok=True)
        if self.redis_url is not None:
            self.keys = self._redis(self.redis_url)
        self._layer_env = self.keys.env if self.keys is not None else {}
        if self.setup:
            self.manage("migrate", "--noinput", "-v", "0")
            self.manage("collectstatic", "--noinput", "-v", "0")
        env = self.env
        for number in range(1, self.processes + 1):
            server = Server(f"daphne-{number}", serve_argv(0), env, logdir=self.logdir)
            self.servers.append(server)
        for server in self.servers:  # started together, waited for in turn
            server.wait_ready()
        self.caddy = Caddy(
            domain=self.domain,
            port=self.https_port,
            upstreams=[f"127.0.0.1:{server.port}" for server in self.servers],
            storage=self.directory / "caddy",
            logdir=self.logdir,
        )
        self.caddy.wait_ready()

    def stop_server(self, index: int, sig: int = signal.SIGTERM) -> None:
        """Stop one daphne process (``servers[index]``); its port stays in Caddy's list."""
        self.servers[index].stop(sig)

    def start_server(self, index: int) -> Server:
        """Start ``servers[index]`` again, on the port it had: Caddy's health check and
        retries bring it back into rotation."""
        old = self.servers[index]
        if old.running():
            raise HarnessError(f"{old.name} is still running")
        if self.logdir is not None:  # keep the log of the process that ended
            for log in self.logdir.glob(f"{old.name}.*log"):
                log.rename(log.with_name(f"{log.stem}.{time.time_ns()}.old"))
        server = Server(old.name, serve_argv(old.port), self.env, logdir=self.logdir)
        self.servers[index] = server
        server.wait_ready()
        return server

    def _redis(self, url: str) -> KeyPrefix:
        """Keys of the stack's own on the shared Redis, or on a private one if none answers."""
        try:
            return KeyPrefix(url, "lmstack")
        except HarnessError:
            pass
        self.private_redis = PrivateRedis(self.directory)
        self.private_redis.start()
        return KeyPrefix(self.private_redis.url, "lmstack")

    @property
    def redis_description(self) -> str:
        if self.keys is None:
            return "none: the in-memory layer"
        where = "a private redis-server" if self.private_redis else self.keys.url
        return f"{where}, keys under {self.keys.prefix}"

    def stop(self) -> None:
        """Stop clients, Caddy, the servers and a private Redis; delete the stack's keys."""
        for process in [*self._clients, *([self.caddy] if self.caddy else []), *self.servers]:
            process.stop()
        self._clients.clear()
        self.servers.clear()
        self.caddy = None
        self._layer_env = None
        keys, self.keys = self.keys, None
        try:
            if keys is not None:
                keys.close()
        finally:
            if self.private_redis is not None:
                self.private_redis.stop()
                self.private_redis = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# -- make stack ------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make stack",
        description="Caddy (tls internal) in front of two Luminet processes on Redis, and a "
        "client for a local port; Ctrl-C stops everything.",
    )
    parser.add_argument("--local-port", type=int, default=3000, help="the port to expose")
    parser.add_argument("--https-port", type=int, default=8443, help="where Caddy listens")
    parser.add_argument("--processes", type=int, default=2, help="daphne processes")
    options = parser.parse_args(argv)
    # Ctrl-C (SIGINT) and SIGTERM both stop everything; SIGINT explicitly, since a
    # shell that starts make in the background has it ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    secret_file = ROOT / "var" / "secret_key"
    stack = Stack(
        STACK_DIR,
        https_port=options.https_port,
        processes=options.processes,
        redis_url=os.environ.get("REDIS_URL") or REDIS_URL,
        database_url=os.environ.get("DATABASE_URL"),
        # The project's key (make's var/secret_key): admin sessions outlive a restart,
        # and manage.py finds the same one by itself.
        secret_key=secret_file.read_text().strip() if secret_file.exists() else None,
        logdir=STACK_DIR / "logs",
    )
    try:
        say(
            f"Starting {options.processes} daphne processes and Caddy on "
            f"https://{DOMAIN}:{options.https_port} (state in {STACK_DIR})"
        )
        stack.start()
        token_file = STACK_DIR / "dev-token"
        stack.manage("dev_token", "--quiet", "--file", str(token_file))
        client = stack.client(
            token_file.read_text().strip(),
            options.local_port,
            log_format="text",
            name="client",
        )
        index, match = client.stdout.wait_for(ACTIVE_RE, 30.0)
        print(banner(stack, match[1], options.local_port), flush=True)
        follow(stack, client, index + 1)
    except KeyboardInterrupt:
        say("Stopping")
        return 0
    except HarnessError as exc:
        print(f"make stack: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
    return 1


def banner(stack: Stack, url: str, local_port: int) -> str:
    ca = _shown(stack.ca)
    database = stack.database_url
    redis = stack.redis_description
    return f"""
Luminet is up behind Caddy: {len(stack.servers)} daphne processes on Redis ({redis}).
  Tunnel:  {url}/  ->  http://localhost:{local_port}
  Admin:   {stack.public_url}/admin/
           an admin user: DATABASE_URL={database} {_shown(Path(PYTHON))} manage.py createsuperuser
  Caddy's local CA (the root of every certificate here): {ca}
    curl --cacert {ca} {url}/
    Chromium and Chrome on Linux trust it once added to your NSS database
    (apt-get install libnss3-tools; the first line makes one if no browser has yet):
      mkdir -p $HOME/.pki/nssdb; test -e $HOME/.pki/nssdb/cert9.db || \
        certutil -d sql:$HOME/.pki/nssdb -N --empty-password
      certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n "Luminet stack CA" -i {ca}
    Firefox: Settings, Certificates, View Certificates, Authorities, Import.
  Logs: {_shown(stack.logdir or stack.directory)}
  Stop with Ctrl-C.
"""


def _shown(path: Path) -> str:
    """A path as short as it can be from the checkout, where make runs."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def follow(stack: Stack, client: Client, start: int) -> None:
    """Print the client's lines as they come, until Ctrl-C or a process of the stack ends."""
    seen = start
    while True:
        lines = client.stdout.lines
        for line in lines[seen:]:
            print(line, flush=True)
        seen = len(lines)
        for process in [client, *stack.servers, *([stack.caddy] if stack.caddy else [])]:
            if not process.running():
                raise HarnessError(f"{process.name} ended\n{process.describe()}")
        time.sleep(FOLLOW_INTERVAL)


if __name__ == "__main__":
    sys.exit(main())
