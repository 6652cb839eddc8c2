"""What a bench run starts: the upstream, bare daphne, Luminet servers and clients, Redis keys.

:class:`Stack` owns every child process and stops them all in ``close()``;
:class:`RedisKeys` deletes the run's own Redis keys and nothing else.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from .procs import PYTHON, BenchError, Child, clean_environ, manage

#: Seconds for a server to import Django and listen.
SERVER_START_TIMEOUT = 60.0
#: Seconds for a client to connect and authenticate.
CLIENT_START_TIMEOUT = 30.0

LISTENING_RE = r"Listening on TCP address 127\.0\.0\.1:(\d+)"
UPSTREAM_RE = r"Upstream listening on 127\.0\.0\.1:(\d+)"


def event_re(event: str) -> str:
    """The pattern of the client's ``--log-format json`` line ``{"event":"<event>",...}``."""
    return rf'^\{{"event":"{event}"[,}}]'


def wait_event(
    client: Child,
    event: str,
    timeout: float,
    *,
    where: dict[str, Any] | None = None,
    poll: float = 0.01,
) -> tuple[int, dict[str, Any]]:
    """Wait for the client's ``event`` with the fields in ``where``; return its index and object.

    A client under load prints a line per request, so lines are checked in memory,
    and parsed only when they hold every wanted value.
    """
    pattern = event_re(event)
    regex = re.compile(pattern)
    wanted = where or {}
    needles = [json.dumps(value) for value in wanted.values()]
    deadline = time.monotonic() + timeout
    index = 0
    while True:
        index, _ = client.wait_for(
            pattern, max(0.0, deadline - time.monotonic()), start=index, poll=poll
        )
        seen = len(client.lines)
        for number in range(index, seen):
            line = client.lines[number]
            if regex.search(line) and all(needle in line for needle in needles):
                found: dict[str, Any] = json.loads(line)
                if wanted.items() <= found.items():
                    return number, found
        if time.monotonic() > deadline:
            raise BenchError(f"{client.name} printed no {event} event with {wanted}")
        index = seen


@dataclass
class Server:
    """A listening process: our server, bare daphne or the upstream."""

    child: Child
    ready_re: str
    port: int = 0

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT) -> None:
        _, match = self.child.wait_for(self.ready_re, timeout)
        self.port = int(match[1])

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/tunnel"


@dataclass
class Tunnel:
    """A connected ``python -m client``: requests for ``host`` may enter at ``entry_port``."""

    client: Child
    subdomain: str
    entry_port: int

    @property
    def host(self) -> str:
        return f"{self.subdomain}.localhost"


class Stack:
    """Starts the bench's processes and stops every one of them in ``close()``."""

    def __init__(self, workdir: Path, logdir: Path) -> None:
        self.workdir = workdir
        self.logdir = logdir
        self.home = workdir / "home"
        self.home.mkdir()
        self.children: list[Child] = []
        self._token: str | None = None
        db_url = f"sqlite:///{workdir / 'db.sqlite3'}"
        if not db_url.startswith("sqlite:////"):
            raise BenchError(f"the work directory must be absolute, not {workdir}")
        self._server_env = clean_environ(
            {
                "SECRET_KEY": secrets.token_urlsafe(50),
                "DATABASE_URL": db_url,
                "LUMINET_PUBLIC_URL": "http://localhost",
            }
        )

    def child(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env, self.logdir)
        self.children.append(child)
        return child

    def prepare_database(self) -> None:
        """Migrate the run's SQLite database and issue the run's one token."""
        manage("migrate", "--noinput", env=self._server_env)
        out = manage("issue_token", "--name", "bench", env=self._server_env)
        lines = out.strip().splitlines()
        if not lines:
            raise BenchError("issue_token printed no token")
        self._token = lines[-1].strip()

    @property
    def token(self) -> str:
        if self._token is None:
            raise BenchError("no token yet: prepare_database() first")
        return self._token

    def upstream(self) -> Server:
        child = self.child(
            "upstream", [PYTHON, "-m", "bench.upstream", "--port", "0"], clean_environ({})
        )
        return Server(child, UPSTREAM_RE)

    def bare_daphne(self) -> Server:
        child = self.child("daphne-hello", [PYTHON, "-m", "bench.hello"], clean_environ({}))
        return Server(child, LISTENING_RE)

    def server(self, name: str, redis_env: dict[str, str] | None) -> Server:
        """Start ``manage.py serve`` on a free port: in-memory layer, or Redis per ``redis_env``."""
        env = dict(self._server_env)
        env.update(redis_env or {})
        argv = [PYTHON, "manage.py", "serve", "--bind", "127.0.0.1", "--port", "0"]
        return Server(self.child(name, argv, env), LISTENING_RE)

    def start_client(self, name: str, server: Server, local_port: int) -> Child:
        argv = [PYTHON, "-m", "client", "--port", str(local_port), "--host", "127.0.0.1"]
        argv += ["--server", server.ws_url, "--log-format", "json"]
        env = clean_environ({"HOME": str(self.home), "TUNNEL_TOKEN": self.token})
        return self.child(name, argv, env)

    def tunnel(self, name: str, server: Server, local_port: int, entry: Server) -> Tunnel:
        """Start a client on ``server`` and wait until it is active."""
        client = self.start_client(name, server, local_port)
        _, active = wait_event(client, "tunnel_active", CLIENT_START_TIMEOUT)
        return Tunnel(client, active["subdomain"], entry.port)

    def close(self) -> None:
        """Stop clients first (so they do not spend the teardown reconnecting), then the rest."""
        errors = []
        for child in sorted(self.children, key=lambda c: not c.name.startswith("client")):
            try:
                child.stop()
            except OSError as exc:
                errors.append(f"{child.name}: {exc}")
        if errors:
            raise BenchError("could not stop: " + "; ".join(errors))


class RedisKeys:
    """A key prefix of the run's own on a shared Redis; ``delete()`` removes only those keys."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"lmbench-{uuid.uuid4().hex[:12]}:"
        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)

    def reachable(self) -> str | None:
        """None if Redis answers, else why not."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            return f"Redis not reachable at {self.url}: {exc}"
        return None

    @property
    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.url, "LUMINET_REDIS_PREFIX": self.prefix}

    def delete(self) -> int:
        """Delete the keys under our prefix (never FLUSHDB: the server is shared)."""
        deleted = 0
        batch: list[bytes] = []
        for key in self._client.scan_iter(match=f"{self.prefix}*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += self._client.delete(*batch)
                batch.clear()
        if batch:
            deleted += self._client.delete(*batch)
        self._client.close()
        return deleted
