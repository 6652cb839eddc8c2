"""Several connections per tunnel, through real Caddy (tls internal) in front of two
daphne processes on one Redis and PostgreSQL (the stack's own SQLite where PostgreSQL
is missing, outside CI): a client's two connections are on different processes,
public requests landing on either are delivered inside that process (no Redis), a
rolling restart fails no request, a killed process costs only what was in flight on
it, and pooled clients share a URL.

One stack for the module (harness.stack, as `make stack` runs it).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness.loopback import session as loopback_session
from harness.stack import DOMAIN, Stack

from .conftest import Database, last_line, start_stack
from .localserver import LocalServer, Reply

pytestmark = pytest.mark.timeout(120)

#: Seconds for one call through Caddy.
CALL_TIMEOUT = 15.0
#: Seconds for a client's connections to settle on the processes (redials included).
SETTLE_DEADLINE = 20.0
#: Seconds of steady traffic while a process is killed.
TRAFFIC_SECONDS = 6.0
#: Requests at most in the rolling restart's traffic (a bound on its loop).
MAX_REQUESTS = 20_000
#: Callers at once in the rolling restart, and how long each answer takes: there
#: is always a request in flight on the process being stopped.
CALLERS = 4
SLOW_ANSWER = 0.3
#: The rolling restart's client tries to spread its connections this often (seconds).
REBALANCE_SECONDS = 1.0
#: Seconds for its connections to spread over both processes again after the restart.
SPREAD_DEADLINE = 45.0


@dataclass
class Deployment:
    stack: Stack
    api_key: str
    token: str

    def url(self, subdomain: str, target: str = "/") -> str:
        return f"https://{subdomain}.{DOMAIN}:{self.stack.https_port}{target}"

    def direct(self, port: int, path: str) -> requests.Response:
        """``path`` of the main host from daphne on ``port`` itself, as Caddy would ask:
        not through Caddy, whose round robin the tunnels' clients rely on."""
        return requests.get(
            f"http://127.0.0.1:{port}{path}",
            headers={
                "Host": f"{DOMAIN}:{self.stack.https_port}",
                "X-Forwarded-Proto": "https",
                "Authorization": f"Bearer {self.api_key}",
            },
            timeout=CALL_TIMEOUT,
        )

    def api(self, path: str) -> requests.Response:
        running = next(server for server in self.stack.servers if server.running())
        return self.direct(running.port, path)

    def live(self, subdomain: str) -> dict | None:
        answer = self.api("/api/tunnels")
        assert answer.status_code == 200, answer.text[:300]
        return next((t for t in answer.json() if t["subdomain"] == subdomain), None)

    def counter(self, index: int, name: str, **labels: str) -> float:
        """A counter of daphne process ``index``, read from its own /metrics."""
        answer = self.direct(self.stack.servers[index].port, "/metrics")
        assert answer.status_code == 200, answer.text[:300]
        return sum(
            sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, stack_database: Database | None
) -> Iterator[Deployment]:
    # Short heartbeats: a killed process's connections leave the registry quickly.
    stack = start_stack(
        tmp_path_factory.mktemp("stack"),
        stack_database,
        settings={"LUMINET_HEARTBEAT_INTERVAL": "1"},
        # Every process's whole log, a restarted one's earlier life included.
        logdir=tmp_path_factory.mktemp("stack-logs"),
    )
    try:
        token = stack.manage("issue_token", "--name", f"conns-{uuid.uuid4().hex[:8]}")
        key = stack.manage("issue_api_key", "--name", f"conns-{uuid.uuid4().hex[:8]}")
        yield Deployment(stack, last_line(key), last_line(token))
    finally:
        stack.stop()


def settled(
    deployment: Deployment,
    subdomain: str,
    connections: int,
    nodes: int,
    within: float = SETTLE_DEADLINE,
) -> dict:
    """The tunnel's live entry once it has ``connections`` connections on ``nodes``
    processes, within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        entry = deployment.live(subdomain)
        if entry and entry["connections"] == connections and len(entry["nodes"]) == nodes:
            return entry
        assert time.monotonic() < deadline, (entry, deployment.stack.describe())
        time.sleep(0.2)  # polling the API: entries are published with each heartbeat


def in_rotation(deployment: Deployment, index: int, url: str) -> None:
    """Wait until Caddy sends requests to process ``index`` again (its health check
    takes it back): requests to ``url`` until that process's request counter grows."""
    before = deployment.counter(index, "luminet_requests_total")
    deadline = time.monotonic() + SETTLE_DEADLINE
    with loopback_session(deployment.stack.ca) as session:
        while deployment.counter(index, "luminet_requests_total") == before:
            assert time.monotonic() < deadline, deployment.stack.describe()
            session.get(url, timeout=CALL_TIMEOUT)


def test_two_connections_on_two_processes_each_deliver_locally(
    deployment: Deployment, local_server: LocalServer, uid: str
) -> None:
    client = deployment.stack.client(deployment.token, local_server.port, name="two-conns")
    subdomain = client.wait_active()[2]
    entry = settled(deployment, subdomain, 2, 2)
    assert entry["client"].startswith("127.0.0.1:")  # the caller Caddy names

    local_server.route(f"/{uid}/local", Reply(body=b"here"))
    before = [
        (
            deployment.counter(i, "luminet_deliveries_total", path="local"),
            deployment.counter(i, "luminet_deliveries_total", path="layer"),
        )
        for i in (0, 1)
    ]
    with loopback_session(deployment.stack.ca) as session:
        for _ in range(12):
            answer = session.get(deployment.url(subdomain, f"/{uid}/local"), timeout=CALL_TIMEOUT)
            assert (answer.status_code, answer.content) == (200, b"here")
    after = [
        (
            deployment.counter(i, "luminet_deliveries_total", path="local"),
            deployment.counter(i, "luminet_deliveries_total", path="layer"),
        )
        for i in (0, 1)
    ]
    local = [a[0] - b[0] for a, b in zip(after, before, strict=True)]
    layer = [a[1] - b[1] for a, b in zip(after, before, strict=True)]
    # Caddy spreads the requests over both processes; each holds a connection, so
    # each delivers what it gets inside itself, never through Redis.
    assert all(count > 0 for count in local) and sum(local) == 12, (local, layer)
    assert layer == [0, 0]


def test_pooled_clients_share_one_url(
    deployment: Deployment, local_server: LocalServer, uid: str
) -> None:
    """Two clients with --pool --subdomain NAME serve one URL; requests reach both."""
    name = f"pool-{uuid.uuid4().hex[:8]}"
    second_local = LocalServer()
    try:
        clients = [
            deployment.stack.client(
                deployment.token,
                port,
                name=f"pooled-{index}",
                args=["--subdomain", name, "--pool", "--connections", "1"],
            )
            for index, port in enumerate((local_server.port, second_local.port))
        ]
        for client in clients:
            assert client.wait_active()[2] == name
        local_server.route(f"/{uid}/pool", Reply(body=b"one"))
        second_local.route(f"/{uid}/pool", Reply(body=b"two"))
        seen = set()
        with loopback_session(deployment.stack.ca) as session:
            for _ in range(40):
                answer = session.get(deployment.url(name, f"/{uid}/pool"), timeout=CALL_TIMEOUT)
                assert answer.status_code == 200
                seen.add(answer.content)
                if seen == {b"one", b"two"}:
                    break
        assert seen == {b"one", b"two"}
        # A client without --pool is refused the pooled name, as any taken name is.
        outsider = deployment.stack.client(
            deployment.token, local_server.port, name="outsider", args=["--subdomain", name]
        )
        assert outsider.wait_exit(30) == 4
    finally:
        second_local.stop()


def test_a_rolling_restart_of_both_processes_fails_no_request(
    deployment: Deployment, local_server: LocalServer, uid: str
) -> None:
    """Steady traffic (several callers, answers that take a while, so requests are
    always in flight) while each process in turn is stopped with SIGTERM and started
    again: a stopping process finishes what it has in flight, its client connection
    moves to the other process, and not one request fails. Then the connections, all
    on one process after the second restart, spread over both again."""
    stack = deployment.stack
    client = stack.client(
        deployment.token,
        local_server.port,
        name="rolling",
        env={"TUNNEL_REBALANCE_SECONDS": str(REBALANCE_SECONDS)},
    )
    subdomain = client.wait_active()[2]
    settled(deployment, subdomain, 2, 2)
    local_server.route(f"/{uid}/rolling", Reply(body=b"rolling", delay=SLOW_ANSWER))
    outcomes: list[str] = []
    stop_traffic = threading.Event()

    def traffic() -> None:
        with loopback_session(stack.ca) as session:
            while not stop_traffic.is_set() and len(outcomes) < MAX_REQUESTS:
                try:
                    answer = session.get(
                        deployment.url(subdomain, f"/{uid}/rolling"), timeout=CALL_TIMEOUT
                    )
                    ok = (answer.status_code, answer.content) == (200, b"rolling")
                    error = answer.headers.get("Luminet-Error")
                    outcomes.append("ok" if ok else f"{answer.status_code} {error}")
                except requests.RequestException as exc:
                    outcomes.append(repr(exc))

    senders = [
        threading.Thread(target=traffic, name=f"traffic-{n}", daemon=True) for n in range(CALLERS)
    ]
    for sender in senders:
        sender.start()
    try:
        for index in (0, 1):
            stack.stop_server(index, signal.SIGTERM)  # returns once it has exited
            # Both connections are on the other process now: they moved.
            settled(deployment, subdomain, 2, 1)
            stack.start_server(index)
            in_rotation(deployment, index, deployment.url(subdomain, f"/{uid}/rolling"))
        # Under the same traffic: a connection moves to the process that came back.
        # The client's tries at that doubled their interval while one process was
        # down (1 s, 2 s, 4 s ...): a few of them, at most, until it is back.
        settled(deployment, subdomain, 2, 2, within=SPREAD_DEADLINE)
    finally:
        stop_traffic.set()
        for sender in senders:
            sender.join(CALL_TIMEOUT + 5)
    failures = [outcome for outcome in outcomes if outcome != "ok"]
    assert failures == [], (failures[:10], stack.describe())
    assert len(outcomes) > 20
    assert client.running(), client.describe()


def test_a_killed_process_costs_at_most_what_was_in_flight_on_it(
    deployment: Deployment, local_server: LocalServer, uid: str
) -> None:
    """(Last: the process it kills comes back out of Caddy's rotation for a while.)
    Steady traffic while one process is killed:
    only requests in flight on it may fail; every later one succeeds, and the client's
    lost connection is dialled again."""
    stack = deployment.stack
    client = stack.client(deployment.token, local_server.port, name="survivor")
    subdomain = client.wait_active()[2]
    settled(deployment, subdomain, 2, 2)
    local_server.route(f"/{uid}/steady", Reply(body=b"steady"))
    failed_after_kill: list[str] = []
    answered = 0
    killed_at: float | None = None
    started = time.monotonic()
    with loopback_session(stack.ca) as session:
        while time.monotonic() - started < TRAFFIC_SECONDS:
            if killed_at is None and time.monotonic() - started > TRAFFIC_SECONDS / 3:
                stack.stop_server(1, signal.SIGKILL)
                killed_at = time.monotonic()
            try:
                answer = session.get(
                    deployment.url(subdomain, f"/{uid}/steady"), timeout=CALL_TIMEOUT
                )
                ok = (answer.status_code, answer.content) == (200, b"steady")
                outcome = f"{answer.status_code} {answer.headers.get('Luminet-Error')}"
            except requests.RequestException as exc:
                ok, outcome = False, repr(exc)
            if ok:
                answered += 1
            elif killed_at is not None:
                failed_after_kill.append(outcome)
            else:
                pytest.fail(f"a request failed before the kill: {outcome}")
    try:
        # Nothing was in flight on the killed process when it died (requests are
        # sequential and Caddy retries a process it cannot reach), so nothing fails.
        assert failed_after_kill == [], stack.describe()
        assert answered > 10
        entry = deployment.live(subdomain)
        assert entry is not None and entry["connections"] >= 1
    finally:
        stack.start_server(1)
