"""Many tunnels in one process, each a session of the client's own library.

    python -m bench.soak.driver --server WS_URL [--server WS_URL ...] --port LOCAL_PORT
        --first N --count K --churn-period S          (token in TUNNEL_TOKEN)

A hundred ``python -m client`` processes would take more of the machine than the
servers under test; what the server sees of a tunnel is its WebSocket, and here
each is made as ``client.session.run`` makes it (``authenticate``, then
``Tunnel.run`` serving requests and WebSockets through ``client.forward`` and
``client.sockets``), one thread per slot. Slot ``n`` uses the ``n``-th server, round
robin. A slot whose tunnel drops when nobody asked reconnects with its subdomain,
as the client does.

Churn: after SIGUSR1, about once per ``churn-period`` seconds per slot, a slot's
tunnel is stopped on purpose (a close frame, or the socket shut without one) and
started again shortly after, half the time asking for its subdomain back. SIGUSR2
stops the churn; once every slot is up again the driver says ``settled``. SIGTERM
ends it.

Stdout is one JSON object per line; ``t`` is ``time.monotonic()``, which every
process on the machine shares::

    {"event":"active","slot":3,"subdomain":"k2x9qa","t":...}
    {"event":"stopping","slot":3,"subdomain":"k2x9qa","how":"close","t":...}
    {"event":"lost","slot":3,"subdomain":"k2x9qa","reason":"...","t":...}   (not on purpose)
    {"event":"stuck","slot":3,"t":...}          (a stopped slot's thread did not end)
    {"event":"settled","active":45,"t":...}
    {"event":"summary","exchanges":{...},"websockets":{...}}                  (at exit)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

import websocket

from client.config import Config
from client.errors import ConnectionLost, TunnelError
from client.events import Events, ExchangeRecord, Observer, SocketRecord
from client.keeper import CONNECT_TIMEOUT, authenticate
from client.session import PING_TIMEOUT, Tunnel, close_socket

#: Seconds a stopped slot's thread gets to end.
STOP_TIMEOUT = 10.0
#: Seconds between the start of two slots, so that they do not all connect at once.
START_STAGGER = 0.02
#: Seconds a churned slot stays down, at random in this range.
DOWN_SECONDS = (0.2, 2.0)
#: Seconds before a slot whose tunnel dropped reconnects (the client's first backoff).
RECONNECT_DELAY = 0.5
#: Requests each tunnel serves at once: the soak's traffic per tunnel is light.
MAX_CONCURRENCY = 4


class Output:
    """JSON lines on stdout, whole, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def event(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields, "t": time.monotonic()})
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


class Tally(Observer):
    """How the exchanges and WebSockets the tunnels served ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exchanges: Counter[str] = Counter()
        self.websockets: Counter[str] = Counter()

    def exchange_finished(self, record: ExchangeRecord) -> None:
        with self._lock:
            self.exchanges["finished"] += 1

    def exchange_failed(self, record: ExchangeRecord, reason: str) -> None:
        failure = record.failure.value if record.failure else "unknown"
        with self._lock:
            self.exchanges[failure] += 1

    def websocket_closed(self, record: SocketRecord) -> None:
        with self._lock:
            self.websockets["closed"] += 1

    def websocket_failed(self, record: SocketRecord, reason: str) -> None:
        failure = record.failure.value if record.failure else "unknown"
        with self._lock:
            self.websockets[failure] += 1


class Slot:
    """One tunnel, kept up by a thread as ``client.session.run`` keeps it, until stopped."""

    def __init__(self, number: int, config: Config, events: Events, out: Output) -> None:
        self.number = number
        self.subdomain: str | None = None
        self._config = config
        self._events = events
        self._out = out
        self._lock = threading.Lock()
        self._ws: websocket.WebSocket | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.active = threading.Event()

    def start(self, subdomain: str | None) -> None:
        """Connect in the background, asking for ``subdomain`` if given."""
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, args=(subdomain,), name=f"slot-{self.number}", daemon=True
        )
        self._thread.start()

    def _run(self, wanted: str | None) -> None:
        while not self._stopping:
            reason = self._session(wanted)
            wanted = self.subdomain
            if self._stopping:
                return
            self._out.event("lost", slot=self.number, subdomain=self.subdomain, reason=reason)
            time.sleep(RECONNECT_DELAY)

    def _session(self, wanted: str | None) -> str:
        """One connection, from connect to its end; return why it ended."""
        try:
            ws = websocket.create_connection(
                self._config.server,
                timeout=CONNECT_TIMEOUT,
                enable_multithread=True,
                skip_utf8_validation=True,
            )
        except (OSError, websocket.WebSocketException) as exc:
            return f"cannot connect: {exc or exc.__class__.__name__}"
        with self._lock:
            self._ws = ws
        try:
            if self._stopping:
                return "stopped"
            ok, _ = authenticate(ws, self._config.token, wanted, resume=wanted is not None)
            ws.settimeout(PING_TIMEOUT)
            self.subdomain = ok.subdomain
            self._out.event("active", slot=self.number, subdomain=ok.subdomain)
            self.active.set()
            Tunnel(ws, self._config, self._events).run()
            return "connection lost"
        except (ConnectionLost, TunnelError) as exc:
            return str(exc) or exc.__class__.__name__
        except (OSError, websocket.WebSocketException) as exc:
            return str(exc) or exc.__class__.__name__
        finally:
            self.active.clear()
            with self._lock:
                self._ws = None
            close_socket(ws)

    def stop(self, how: str) -> bool:
        """End the tunnel on purpose: ``close`` sends a close frame, ``drop`` shuts the
        socket without one. Return whether the slot's thread ended in time."""
        with self._lock:
            self._stopping = True
            ws = self._ws
        if ws is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                if how == "close":
                    ws.send_close()
                else:
                    ws.abort()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            return not self._thread.is_alive()
        return True


class Driver:
    """The slots of one process, and the churn among them."""

    def __init__(self, slots: list[Slot], churn_period: float, out: Output) -> None:
        self.slots = slots
        self._churn_period = churn_period
        self._out = out
        self._rng = random.Random()
        #: Slots stopped by the churn: when to start each again, and with which name.
        self._down: dict[Slot, tuple[float, str | None]] = {}
        self._wake = threading.Event()
        self.churning = False
        self.settle_wanted = False
        self.ending = False

    def signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGUSR1:
            self.churning = True
        elif signum == signal.SIGUSR2:
            self.churning = False
            self.settle_wanted = True
        else:
            self.ending = True
        self._wake.set()

    def run(self) -> None:
        for slot in self.slots:
            slot.start(None)
            time.sleep(START_STAGGER)
        next_churn = self._next_churn()
        while not self.ending:
            now = time.monotonic()
            for slot, (due, subdomain) in list(self._down.items()):
                if now >= due:
                    del self._down[slot]
                    slot.start(subdomain)
            if self.churning and now >= next_churn:
                self._churn_one()
                next_churn = now + self._next_churn()
            elif not self.churning:
                next_churn = now + self._next_churn()
            if self.settle_wanted and not self._down and all(s.active.is_set() for s in self.slots):
                self.settle_wanted = False
                self._out.event("settled", active=len(self.slots))
            self._wake.wait(0.05)
            self._wake.clear()

    def _next_churn(self) -> float:
        """Seconds to the next churn: a Poisson process, each slot churned once a period."""
        return self._rng.expovariate(len(self.slots) / self._churn_period)

    def _churn_one(self) -> None:
        up = [slot for slot in self.slots if slot.active.is_set() and slot not in self._down]
        if not up:
            return
        slot = self._rng.choice(up)
        how = self._rng.choice(["close", "drop"])
        self._out.event("stopping", slot=slot.number, subdomain=slot.subdomain, how=how)
        if not slot.stop(how):
            self._out.event("stuck", slot=slot.number)
        again = slot.subdomain if self._rng.random() < 0.5 else None
        self._down[slot] = (time.monotonic() + self._rng.uniform(*DOWN_SECONDS), again)

    def close(self) -> None:
        for slot in self.slots:
            slot.stop("close")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak.driver", description=__doc__)
    parser.add_argument("--server", action="append", required=True, help="tunnel WebSocket URL")
    parser.add_argument("--port", type=int, required=True, help="the local server's port")
    parser.add_argument("--first", type=int, default=0, help="number of the first slot")
    parser.add_argument("--count", type=int, required=True, help="slots (tunnels)")
    parser.add_argument("--churn-period", type=float, default=240.0)
    args = parser.parse_args(argv)
    token = os.environ.get("TUNNEL_TOKEN", "")
    if not token:
        print("TUNNEL_TOKEN is not set", file=sys.stderr)
        return 2
    out = Output()
    tally = Tally()
    events = Events([tally])
    slots = []
    for number in range(args.first, args.first + args.count):
        server = args.server[number % len(args.server)]
        config = Config(
            server=server,
            token=token,
            local_host="127.0.0.1",
            local_port=args.port,
            max_concurrency=MAX_CONCURRENCY,
        )
        slots.append(Slot(number, config, events, out))
    driver = Driver(slots, args.churn_period, out)
    for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, driver.signal)
    try:
        driver.run()
    finally:
        driver.close()
        out.event("summary", exchanges=dict(tally.exchanges), websockets=dict(tally.websockets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
