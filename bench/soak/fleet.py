"""The soak's tunnels: which are live, which were stopped on purpose, and the churn.

Two kinds of slot keep one tunnel each:

- ``c<n>``: a real ``python -m client`` process. Its churn is done here: SIGTERM,
  or now and then SIGKILL, and a new process in its place (a new subdomain).
- ``d<n>``: a session in a driver process (``bench.soak.driver``), which churns its
  own slots while told to (SIGUSR1 on, SIGUSR2 off) and says what it did.

Everything a slot does arrives as a JSON line (the client's events, the driver's);
:meth:`Fleet.poll` reads them, keeps the set of live subdomains the traffic picks
from, and keeps, per subdomain, the windows during which it was down on purpose:
a request whose life overlaps one of them may fail without it being a bug.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from harness import PYTHON, Client, HarnessError, Process, Server, clean_environ

from ..stack import BenchError, Stack

#: Share of the real clients' churn done with SIGKILL rather than SIGTERM.
KILL_SHARE = 1 / 3
#: Seconds for a restarted client to say its tunnel is active before it counts as lost.
CLIENT_START_TIMEOUT = 30.0
#: Seconds a driver gets to close its tunnels and exit.
STOP_TIMEOUT = 20.0


@dataclass
class Window:
    """A subdomain down on purpose from ``start``; ``end`` once it is live again."""

    start: float
    end: float | None = None


class Windows:
    """When each subdomain was down on purpose. Times are ``time.monotonic()``."""

    def __init__(self) -> None:
        self._windows: dict[str, list[Window]] = {}

    def down(self, subdomain: str, at: float) -> None:
        self._windows.setdefault(subdomain, []).append(Window(at))

    def up(self, subdomain: str, at: float) -> None:
        for window in self._windows.get(subdomain, []):
            if window.end is None:
                window.end = at

    def explain(self, subdomain: str, started: float, ended: float) -> bool:
        """Whether ``subdomain`` was down on purpose at some time between the two."""
        return any(
            w.start <= ended and (w.end is None or started <= w.end)
            for w in self._windows.get(subdomain, [])
        )


@dataclass
class ClientSlot:
    number: int
    server: Server
    client: Client | None = None
    generation: int = 0
    #: Lines of the client's output already read.
    seen: int = 0
    started: float = 0.0

    @property
    def key(self) -> str:
        return f"c{self.number}"


@dataclass
class DriverProcess:
    process: Process
    slots: int
    seen: int = 0
    settled: bool = False
    summary: dict[str, Any] = field(default_factory=dict)


class Fleet:
    """Starts the tunnels, churns them, and says which are live; ``stop()`` ends them."""

    def __init__(
        self,
        stack: Stack,
        servers: list[Server],
        local_port: int,
        *,
        clients: int,
        driven: int,
        per_driver: int,
        churn_period: float,
    ) -> None:
        self._stack = stack
        self._servers = servers
        self._local_port = local_port
        self._churn_period = churn_period
        self._rng = random.Random()
        self._lock = threading.Lock()
        self.client_slots = [ClientSlot(n, servers[n % len(servers)]) for n in range(clients)]
        self.driven = driven
        self.per_driver = per_driver
        self.drivers: list[DriverProcess] = []
        #: Slot key -> its live subdomain.
        self.live: dict[str, str] = {}
        self.windows = Windows()
        self.churning = False
        self._next_client_churn = float("inf")
        #: What happened, for the report.
        self.churns: dict[str, int] = {"close": 0, "drop": 0, "SIGTERM": 0, "SIGKILL": 0}
        self.unplanned: list[dict[str, Any]] = []

    @property
    def size(self) -> int:
        return len(self.client_slots) + self.driven

    # -- starting and stopping ---------------------------------------------------

    def start(self, timeout: float) -> None:
        """Start every slot; return once each has a live tunnel."""
        urls = [arg for server in self._servers for arg in ("--server", server.ws_url)]
        env = clean_environ({"HOME": str(self._stack.home), "TUNNEL_TOKEN": self._stack.token})
        processes = -(-self.driven // self.per_driver)
        first = 0
        for n in range(processes):
            # As even as can be: 180 tunnels at 50 a driver are 4 drivers of 45.
            count = self.driven // processes + (n < self.driven % processes)
            argv = [PYTHON, "-m", "bench.soak.driver", *urls, "--port", str(self._local_port)]
            argv += ["--first", str(first), "--count", str(count)]
            argv += ["--churn-period", str(self._churn_period)]
            name = f"driver-{len(self.drivers)}"
            process = Process(name, argv, env, merge=False, logdir=self._stack.logdir)
            self.drivers.append(DriverProcess(self._stack.own(process), count))
            first += count
        for slot in self.client_slots:
            self._start_client(slot)
        deadline = time.monotonic() + timeout
        while self.live_count() < self.size:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"only {self.live_count()} of {self.size} tunnels active after {timeout:g} s"
                    f"\n{self.describe()}"
                )
            self.poll()
            time.sleep(0.2)

    def _start_client(self, slot: ClientSlot) -> None:
        slot.generation += 1
        name = f"client-{slot.key}-{slot.generation}"
        slot.client = self._stack.start_client(name, slot.server, self._local_port)
        slot.seen = 0
        slot.started = time.monotonic()

    def stop(self) -> None:
        """Stop the drivers (they close their tunnels) and the clients; keep the summaries."""
        # All at once, each closing its tunnels; read the summary before stop() closes the log.
        for driver in self.drivers:
            if driver.process.running():
                driver.process.proc.send_signal(signal.SIGTERM)
        for driver in self.drivers:
            with contextlib.suppress(HarnessError):
                driver.process.wait_exit(STOP_TIMEOUT)
            self._read_driver(driver, ended=True)
            driver.process.stop()
        for slot in self.client_slots:
            if slot.client is not None:
                slot.client.stop()

    def describe(self) -> str:
        """The output of the drivers and the current clients, for a failure."""
        processes = [d.process for d in self.drivers]
        processes += [s.client for s in self.client_slots if s.client is not None]
        return "\n".join(p.describe(20) for p in processes)

    # -- the churn ---------------------------------------------------------------

    def churn(self, on: bool) -> None:
        """Start or stop churning every kind of slot."""
        self.churning = on
        for driver in self.drivers:
            driver.settled = False
            driver.process.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)
        self._next_client_churn = time.monotonic() + self._client_churn_gap() if on else 0.0

    def settle(self, timeout: float) -> None:
        """Stop the churn; return once every slot has its tunnel back."""
        self.churn(False)
        deadline = time.monotonic() + timeout
        while not (all(d.settled for d in self.drivers) and self.live_count() == self.size):
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.live_count()} of {self.size} tunnels active {timeout:g} s after "
                    f"the churn stopped\n{self.describe()}"
                )
            self.poll()
            time.sleep(0.2)

    def _client_churn_gap(self) -> float:
        """Seconds to the next client churn: each client about once per churn period."""
        if not self.client_slots:
            return float("inf")
        return self._rng.expovariate(len(self.client_slots) / self._churn_period)

    def _churn_client(self) -> None:
        with self._lock:
            up = [s for s in self.client_slots if s.key in self.live]
        if not up:
            return
        slot = self._rng.choice(up)
        sig = signal.SIGKILL if self._rng.random() < KILL_SHARE else signal.SIGTERM
        self._down_on_purpose(slot.key, time.monotonic())
        assert slot.client is not None
        slot.client.stop(sig)
        self.churns[sig.name] += 1
        self._start_client(slot)

    def _down_on_purpose(self, key: str, at: float) -> None:
        with self._lock:
            subdomain = self.live.pop(key, None)
            if subdomain is not None:
                self.windows.down(subdomain, at)

    # -- what the slots say ---------------------------------------------------------

    def poll(self) -> None:
        """Read what every slot said since the last poll; churn a client if one is due."""
        for driver in self.drivers:
            self._read_driver(driver)
        for slot in self.client_slots:
            self._read_client(slot)
        if self.churning and time.monotonic() >= self._next_client_churn:
            self._churn_client()
            self._next_client_churn = time.monotonic() + self._client_churn_gap()

    def _read_driver(self, driver: DriverProcess, ended: bool = False) -> None:
        lines = driver.process.stdout.lines
        for line in lines[driver.seen :]:
            event = _event(line)
            if event is None:
                continue
            kind, key = event["event"], f"d{event.get('slot')}"
            if kind == "active":
                self._up(key, event["subdomain"], event["t"])
            elif kind == "stopping":
                self._down_on_purpose(key, event["t"])
                self.churns[event["how"]] += 1
            elif kind in ("lost", "stuck"):
                self._lost(key, event)
            elif kind == "settled":
                driver.settled = True
            elif kind == "summary":
                driver.summary = event
        driver.seen = len(lines)
        if not ended and not driver.process.running():
            raise BenchError(f"{driver.process.name} ended\n{driver.process.describe()}")

    def _read_client(self, slot: ClientSlot) -> None:
        client = slot.client
        assert client is not None
        lines = client.stdout.lines
        for line in lines[slot.seen :]:
            event = _event(line)
            if event is None:
                continue
            if event["event"] == "tunnel_active":
                self._up(slot.key, event["subdomain"], time.monotonic())
            elif event["event"] == "tunnel_down":
                self._lost(slot.key, event)
        slot.seen = len(lines)
        if not client.running():
            self._lost(slot.key, {"event": "exited", "status": client.proc.returncode})
            self._start_client(slot)
        elif slot.key not in self.live and time.monotonic() - slot.started > CLIENT_START_TIMEOUT:
            self._lost(slot.key, {"event": "never active"})
            client.stop()
            self._start_client(slot)

    def _up(self, key: str, subdomain: str, at: float) -> None:
        with self._lock:
            self.live[key] = subdomain
            self.windows.up(subdomain, at)

    def _lost(self, key: str, event: dict[str, Any]) -> None:
        """A tunnel went down without being asked to: a finding, not churn."""
        with self._lock:
            subdomain = self.live.pop(key, None)
        self.unplanned.append({"slot": key, "subdomain": subdomain, **event})

    # -- for the traffic ----------------------------------------------------------------

    def live_count(self) -> int:
        with self._lock:
            return len(self.live)

    def pick(self, rng: random.Random) -> str | None:
        """A live subdomain, at random; None if none is."""
        with self._lock:
            live = list(self.live.values())
        return rng.choice(live) if live else None

    def live_subdomains(self) -> list[str]:
        with self._lock:
            return sorted(self.live.values())

    def on_purpose(self, subdomain: str, started: float, ended: float) -> bool:
        """Whether ``subdomain`` was down on purpose at some time between the two."""
        with self._lock:
            return self.windows.explain(subdomain, started, ended)


def _event(line: str) -> dict[str, Any] | None:
    if not line.startswith('{"event":'):
        return None
    try:
        event: dict[str, Any] = json.loads(line)
    except ValueError:
        return None
    return event
