"""What a bench run starts: the upstream, bare daphne, Luminet servers and clients.

:class:`Stack` owns every child process and stops them all in ``close()``; each
writes its output to ``<logdir>/<name>.log`` (``harness.Process``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from harness import (
    PYTHON,
    UPSTREAM_RE,
    Client,
    HarnessError,
    Process,
    Server,
    clean_environ,
    manage,
    serve_argv,
)

#: Seconds for a server to import Django and listen: the bench starts them all at once.
SERVER_START_TIMEOUT = 60.0
#: Seconds for a client to connect and authenticate.
CLIENT_START_TIMEOUT = 30.0

P = TypeVar("P", bound=Process)


class BenchError(HarnessError):
    """Something the bench needs did not work; the message says what."""


@dataclass
class Tunnel:
    """A connected ``python -m client``: requests for ``host`` may enter at ``entry_port``."""

    client: Client
    subdomain: str
    entry_port: int

    @property
    def host(self) -> str:
        return f"{self.subdomain}.localhost"


class Stack:
    """Starts the bench's processes and stops every one of them in ``close()``."""

    def __init__(
        self, workdir: Path, logdir: Path, settings: Mapping[str, str] | None = None
    ) -> None:
        """``settings`` are more settings for every Luminet server (``LUMINET_*``)."""
        self.workdir = workdir
        self.settings = dict(settings or {})
        self.logdir = logdir
        self.home = workdir / "home"
        self.home.mkdir()
        self.processes: list[Process] = []
        self._token: str | None = None
        self._api_key: str | None = None
        self.database = workdir / "db.sqlite3"
        db_url = f"sqlite:///{self.database}"
        if not db_url.startswith("sqlite:////"):
            raise BenchError(f"the work directory must be absolute, not {workdir}")
        self._server_env = clean_environ(
            {
                "SECRET_KEY": secrets.token_urlsafe(50),
                "DATABASE_URL": db_url,
                "LUMINET_PUBLIC_URL": "http://localhost",
                # Measured processes stop at once (tunnels.drain is not measured here).
                "LUMINET_DRAIN_SECONDS": "0",
                **(settings or {}),
            }
        )

    def own(self, process: P) -> P:
        """Take ``process`` in: ``close()`` stops it with the rest."""
        self.processes.append(process)
        return process

    def prepare_database(self) -> None:
        """Migrate the run's SQLite database; issue the run's one token and API key."""
        manage("migrate", "--noinput", env=self._server_env)
        done = manage("issue_token", "--name", "bench", env=self._server_env)
        lines = done.stdout.strip().splitlines()
        if not lines:
            raise BenchError("issue_token printed no token")
        self._token = lines[-1].strip()
        # For the processes' /metrics behind Caddy (bench/caddy.py).
        done = manage("issue_api_key", "--name", "bench", env=self._server_env)
        lines = done.stdout.strip().splitlines()
        if not lines:
            raise BenchError("issue_api_key printed no key")
        self._api_key = lines[-1].strip()

    @property
    def token(self) -> str:
        if self._token is None:
            raise BenchError("no token yet: prepare_database() first")
        return self._token

    @property
    def api_key(self) -> str:
        if self._api_key is None:
            raise BenchError("no API key yet: prepare_database() first")
        return self._api_key

    def upstream(self) -> Server:
        argv = [PYTHON, "-m", "bench.upstream", "--port", "0"]
        env = clean_environ({})
        return self.own(Server("upstream", argv, env, ready=UPSTREAM_RE, logdir=self.logdir))

    def bare_daphne(self) -> Server:
        argv = [PYTHON, "-m", "bench.hello"]
        return self.own(Server("daphne-hello", argv, clean_environ({}), logdir=self.logdir))

    def server(self, name: str, redis_env: dict[str, str] | None) -> Server:
        """Start ``manage.py serve`` on a free port: in-memory layer, or Redis per ``redis_env``."""
        env = dict(self._server_env)
        env.update(redis_env or {})
        return self.own(Server(name, serve_argv(), env, logdir=self.logdir))

    @staticmethod
    def wait_ready(*servers: Server) -> None:
        """Wait until each server listens; they start at once, so the slowest sets the pace."""
        for server in servers:
            server.wait_ready(SERVER_START_TIMEOUT)

    def start_client(
        self, name: str, server: Server, local_port: int, args: Sequence[str] = ()
    ) -> Client:
        """Start ``python -m client``; ``args`` are more flags (``--no-inspect``)."""
        client = Client(
            server_url=server.ws_url,
            local_port=local_port,
            token=self.token,
            home=self.home,
            name=name,
            merge=True,
            logdir=self.logdir,
            args=args,
        )
        return self.own(client)

    def tunnel(
        self, name: str, server: Server, local_port: int, entry: Server, args: Sequence[str] = ()
    ) -> Tunnel:
        """Start a client on ``server`` and wait until it is active."""
        client = self.start_client(name, server, local_port, args)
        _, active = client.wait_event("tunnel_active", CLIENT_START_TIMEOUT)
        return Tunnel(client, active["subdomain"], entry.port)

    def close(self) -> None:
        """Stop clients first (so they do not spend the teardown reconnecting), then the rest."""
        errors = []
        for process in sorted(self.processes, key=lambda p: not isinstance(p, Client)):
            try:
                process.stop()
            except OSError as exc:
                errors.append(f"{process.name}: {exc}")
        if errors:
            raise BenchError("could not stop: " + "; ".join(errors))
