"""What the soak watches, and whether it stayed flat.

A sample holds, per process, what a leak would grow:

- each server: RSS, open file descriptors, threads, and from its ``stats:`` log
  line (``LUMINET_STATS_INTERVAL``) asyncio tasks, daphne's connections and the
  bytes its memory budget holds; and its TCP connections to Redis: redis-py's
  pools open a connection per command in flight and keep every one, so their
  size is the most commands ever in flight at once, and it rises a little with
  each new burst (descriptors are judged without them, the pools with slack: a
  leak grows with the churn and the time, a high-water mark does not);
- each driver: RSS, descriptors, threads, its tunnel sockets (TCP to a server)
  and its sockets to the local server (the tunnels' keep-alive pools, which come
  and go with the traffic, so descriptors are judged without them);
- the local server: RSS and descriptors (shown, not judged: its connections are
  the tunnels' pools);
- Redis: the keys under the soak's prefix (registry entries ``tunnel:*``, the
  rest: channel-layer queues and groups) and ``connected_clients`` of the whole
  server, which others share (shown, not judged: each server's own connections
  are counted above).

The verdict compares the two quiet samples, taken with the traffic paused and
every tunnel up: the baseline after the warm-up and the final one after the
churn. :data:`GROWTH` says how much more a figure may end with; some figures
must end exactly at a known value instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from harness import HarnessError, Process, Server, procfs

#: Other Redis keys a sample names (channel-layer queues: messages not yet received).
OTHER_KEYS_SHOWN = 10
#: The server's line (tunnelsite.server.LuminetServer.log_stats).
STATS_RE = re.compile(r"stats: tasks=(\d+) connections=(\d+) budget_held=(\d+)$")


@dataclass(frozen=True)
class Growth:
    """``end`` may exceed ``start`` by ``absolute`` or ``relative`` x start, whichever is more."""

    absolute: float
    relative: float = 0.0

    def allowed(self, start: float) -> float:
        return max(self.absolute, self.relative * start)


#: How much each judged figure may grow from the baseline to the end, by process kind.
GROWTH: dict[str, dict[str, Growth]] = {
    "server": {
        "rss_mb": Growth(20.0, 0.10),
        "fds_no_redis": Growth(3),
        "tasks": Growth(5, 0.02),
        "connections": Growth(3),
        "redis_conns": Growth(5, 0.25),
    },
    "driver": {"rss_mb": Growth(20.0, 0.10), "fds_no_pool": Growth(3)},
    "redis": {"other_keys": Growth(5)},
}
#: Labels of the figures, in the order the table shows them.
LABELS = {
    "rss_mb": "RSS MB",
    "fds": "open fds",
    "fds_no_pool": "fds w/o pool",
    "fds_no_redis": "fds w/o Redis",
    "threads": "threads",
    "tasks": "asyncio tasks",
    "connections": "connections",
    "budget_held": "budget held B",
    "redis_conns": "Redis conns",
    "tunnel_sockets": "tunnel sockets",
    "local_sockets": "pool sockets",
    "tunnel_keys": "keys tunnel:*",
    "other_keys": "other keys",
    "clients_total": "clients (all)",
    "live_tunnels": "live tunnels",
}


def latest_stats(server: Server, after: int = 0) -> tuple[int, dict[str, int]] | None:
    """The last ``stats:`` line at or after line ``after``: its index and figures."""
    lines = server.stdout.lines
    for index in range(len(lines) - 1, after - 1, -1):
        if match := STATS_RE.search(lines[index]):
            tasks, connections, held = (int(x) for x in match.groups())
            return index, {"tasks": tasks, "connections": connections, "budget_held": held}
    return None


class Sampler:
    """Takes samples of the soak's processes and of its Redis keys."""

    def __init__(
        self,
        *,
        servers: dict[str, Server],
        drivers: dict[str, tuple[Process, int]],
        local: Server,
        redis_url: str,
        prefix: str,
    ) -> None:
        """``drivers``: each driver process and its number of tunnels."""
        self.servers = servers
        self.drivers = drivers
        self.local = local
        self.prefix = prefix
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
        self._redis_port = self._redis.connection_pool.connection_kwargs.get("port", 6379)

    def close(self) -> None:
        self._redis.close()

    def stats_marks(self) -> dict[str, int]:
        """How many lines each server has printed: stats lines after this are fresh."""
        return {name: len(server.stdout.lines) for name, server in self.servers.items()}

    def fresh_stats(self, marks: dict[str, int], count: int) -> bool:
        """Whether every server printed ``count`` stats lines since ``marks``."""
        for name, server in self.servers.items():
            lines = server.stdout.lines[marks[name] :]
            if sum(1 for line in lines if STATS_RE.search(line)) < count:
                return False
        return True

    def take(self, phase: str, elapsed: float, live_tunnels: int) -> dict[str, Any]:
        processes: dict[str, dict[str, float]] = {}
        server_ports = {server.port for server in self.servers.values()}
        for name, server in self.servers.items():
            figures = _process(server)
            stats = latest_stats(server)
            figures.update(stats[1] if stats else {})
            sockets = procfs.tcp_sockets(server.pid)
            figures["redis_conns"] = sum(s.remote_port == self._redis_port for s in sockets)
            figures["fds_no_redis"] = figures["fds"] - figures["redis_conns"]
            processes[name] = figures
        for name, (driver, _) in self.drivers.items():
            figures = _process(driver)
            sockets = procfs.tcp_sockets(driver.pid)
            figures["tunnel_sockets"] = sum(s.remote_port in server_ports for s in sockets)
            figures["local_sockets"] = sum(s.remote_port == self.local.port for s in sockets)
            figures["fds_no_pool"] = figures["fds"] - figures["local_sockets"]
            processes[name] = figures
        processes["local"] = _process(self.local)
        return {
            "t": round(elapsed, 1),
            "phase": phase,
            "live_tunnels": live_tunnels,
            "processes": processes,
            **self._redis_figures(),
        }

    def _redis_figures(self) -> dict[str, Any]:
        """The ``redis`` figures, and ``redis_other``: a few of the other keys, for a look."""
        tunnel = 0
        others: list[str] = []
        registry = f"{self.prefix}tunnel:".encode()
        try:
            # SCAN, never KEYS: the server is shared.
            for key in self._redis.scan_iter(match=f"{self.prefix}*", count=1000):
                if key.startswith(registry):
                    tunnel += 1
                else:
                    others.append(key[len(self.prefix) :].decode("utf-8", "replace"))
            clients = int(self._redis.info("clients")["connected_clients"])
        except redis.RedisError as exc:
            raise HarnessError(f"cannot sample Redis: {exc}") from exc
        figures = {"tunnel_keys": tunnel, "other_keys": len(others), "clients_total": clients}
        return {"redis": figures, "redis_other": sorted(others)[:OTHER_KEYS_SHOWN]}


def _process(process: Process) -> dict[str, float]:
    pid = process.pid
    return {
        "rss_mb": round(procfs.rss(pid) / 1e6, 1),
        "fds": procfs.open_fds(pid),
        "threads": procfs.threads(pid),
    }


# -- the summary and the verdict --------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One figure of one process across the run."""

    owner: str
    figure: str
    start: float | None
    middle: float | None
    end: float | None
    max: float | None
    #: None when the figure is only shown; else whether it passed, and how.
    ok: bool | None = None
    note: str = ""


def summarize(samples: list[dict[str, Any]], driver_tunnels: dict[str, int]) -> list[Row]:
    """Start (baseline), middle, end (final) and max of every figure, each judged if it is."""
    start = next(s for s in samples if s["phase"] == "baseline")
    end = next(s for s in reversed(samples) if s["phase"] == "final")
    halfway = (start["t"] + end["t"]) / 2
    running = [s for s in samples if s["phase"] == "run"] or [end]
    middle = min(running, key=lambda s: abs(s["t"] - halfway))

    def figures(sample: dict[str, Any], owner: str) -> dict[str, float]:
        if owner == "redis":
            return {**sample["redis"], "live_tunnels": sample["live_tunnels"]}
        return sample["processes"].get(owner, {})

    rows = []
    for owner in [*start["processes"], "redis"]:
        kind = "redis" if owner == "redis" else owner.split("-")[0]
        names = [n for n in LABELS if n in figures(start, owner)]
        for name in names:
            values = [figures(s, owner).get(name) for s in samples]
            seen = [v for v in values if v is not None]
            row = Row(
                owner,
                name,
                figures(start, owner).get(name),
                figures(middle, owner).get(name),
                figures(end, owner).get(name),
                max(seen) if seen else None,
            )
            rows.append(_judge(row, kind, end, driver_tunnels.get(owner)))
    return rows


def _judge(row: Row, kind: str, end: dict[str, Any], tunnels: int | None) -> Row:
    """Fill in ``ok`` and ``note`` for the figures that are judged."""
    exact: float | None = None
    if row.figure == "budget_held":
        exact = 0
    elif row.figure == "tunnel_keys":
        exact = end["live_tunnels"]
    elif row.figure == "tunnel_sockets" and tunnels is not None:
        exact = tunnels
    if row.start is None or row.end is None:
        return row
    if exact is not None:
        ok = row.end == exact
        return _replace(row, ok, f"must end at {exact:g}")
    growth = GROWTH.get(kind, {}).get(row.figure)
    if growth is None:
        return row
    allowed = growth.allowed(row.start)
    grew = row.end - row.start
    return _replace(row, grew <= allowed, f"{grew:+.3g} (allowed +{allowed:.3g})")


def _replace(row: Row, ok: bool, note: str) -> Row:
    return Row(row.owner, row.figure, row.start, row.middle, row.end, row.max, ok, note)


def table(rows: Iterable[Row]) -> str:
    """The rows as a text table, one line per figure."""
    lines = [f"{'':10} {'':15} {'start':>10} {'middle':>10} {'end':>10} {'max':>10}  verdict"]
    owner = None
    for row in rows:
        shown = row.owner if row.owner != owner else ""
        owner = row.owner
        cells = [_cell(v) for v in (row.start, row.middle, row.end, row.max)]
        verdict = "" if row.ok is None else ("ok" if row.ok else "NOT FLAT") + f"  {row.note}"
        label = LABELS.get(row.figure, row.figure)
        figures = " ".join(f"{cell:>10}" for cell in cells)
        lines.append(f"{shown:10} {label:15} {figures}  {verdict}")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1f}"
    return str(int(value))
