"""One figure, quickly: for measuring a change back to back (docs/performance.md).

    python -m bench.probe get --layer memory --connections 50
    python -m bench.probe transfer --layer redis --direction down --mb 200
    python -m bench.probe queued --uploads 150 --mb 2
    python -m bench.probe get --connections 50 --client-args=--no-inspect
    python -m bench.probe get --layer redis --enter same --connections 50
    python -m bench.probe get --via caddy --layer redis --connections 50
    python -m bench.probe get --connections 50 --setting LUMINET_HEARTBEAT_INTERVAL=5

``idle`` opens that many idle tunnel connections (``bench/idle.py``) on one
server and reports what each costs: the server's RSS and file descriptors, and
on Redis (a private ``redis-server``, so its counters are the server's alone)
Redis keys, memory and commands per second while they sit idle for
``--seconds`` (heartbeats). All of them come from 127.0.0.1, so beyond 256 the
per-address cap must be raised. docs/scaling.md quotes it:

    python -m bench.probe idle --layer redis --tunnels 1000 --seconds 45 \
        --setting LUMINET_MAX_CONNECTIONS_PER_ADDRESS=2000

``queued`` sends that many uploads at once to a local server that accepts and
never reads (issue 8, defect 6), until no socket takes another byte, and reports
how much each process grew (peak RSS over its RSS before).

Starts only what that figure needs (the upstream, one server, or two on Redis
with the request entering the second, or with ``--enter same`` one on Redis
entered directly, and a client), prints the figure with
the CPU cores each process kept busy, and stops everything. ``--via caddy``
measures the deployment behind Caddy instead (``bench/caddy.py``): one process
in memory (``--layer memory``) or two on Redis (``--layer redis``), over HTTPS.
The full bench (``python -m bench``) remains the reference; this is for the loop
of profiling.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests
import websocket

from harness import HarnessError, KeyPrefix, PrivateRedis, Process, Server, procfs

from . import caddy, clients, wrk
from .idle import IdleTunnels
from .run import with_cpu
from .stack import Stack, Tunnel

REDIS_URL = "redis://127.0.0.1:6379/10"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__)
    parser.add_argument("figure", choices=["get", "transfer", "queued", "idle"])
    parser.add_argument("--layer", choices=["memory", "redis"], default="memory")
    parser.add_argument("--connections", type=int, default=1, help="for get (1)")
    parser.add_argument("--seconds", type=float, default=5.0, help="for get (5)")
    parser.add_argument("--direction", choices=["down", "up"], default="down")
    parser.add_argument("--mb", type=float, default=200.0, help="for transfer (200), queued")
    parser.add_argument("--uploads", type=int, default=150, help="for queued (150)")
    parser.add_argument("--tunnels", type=int, default=1000, help="for idle (1000)")
    parser.add_argument(
        "--idle",
        type=int,
        default=0,
        help="for get and transfer: idle tunnel connections the tunnel's process holds too",
    )
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument(
        "--enter",
        choices=["other", "same"],
        default="other",
        help="on Redis: the request enters a second process (other, the default) or the "
        "process holding the tunnel (same: local delivery)",
    )
    parser.add_argument(
        "--via",
        choices=["daphne", "caddy"],
        default="daphne",
        help="for get and transfer: straight to daphne (the default) or through Caddy "
        "(https; memory: 1 process, redis: 2)",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting for every Luminet process, e.g. "
        "LUMINET_HEARTBEAT_INTERVAL=5 (repeatable)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        help='for get: a request header line, e.g. "Authorization: Basic ..." (repeatable)',
    )
    parser.add_argument(
        "--logs",
        type=Path,
        help="keep every process's output in this directory (default: deleted at the end)",
    )
    parser.add_argument(
        "--client-args",
        default="",
        help="more flags for the client, as one shell-quoted string (e.g. --no-inspect)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = dict(item.partition("=")[::2] for item in args.setting)
    if any(not name.startswith("LUMINET_") for name in settings):
        parser.error("--setting takes LUMINET_NAME=VALUE")
    if args.via == "caddy" and args.figure in ("queued", "idle"):
        parser.error("--via caddy measures get and transfer")
    if args.figure == "idle":
        return probe_idle(args, settings)
    try:
        keys = KeyPrefix(args.redis_url, "lmbench") if args.layer == "redis" else None
    except HarnessError as exc:
        print(exc, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="luminet-probe-") as work:
        logs = args.logs or Path(work) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stack = Stack(Path(work), logs, settings)
        try:
            if args.via == "caddy":
                print(measure_caddy(stack, keys, args))
            else:
                print(measure(stack, keys, args))
        except HarnessError as exc:
            print(f"probe failed: {exc}", file=sys.stderr)
            return 1
        finally:
            stack.close()
            if keys is not None:
                keys.close()
    return 0


def measure(stack: Stack, keys: KeyPrefix | None, args: argparse.Namespace) -> str:
    stack.prepare_database()
    if args.figure == "queued":
        return measure_queued(stack, keys, args)
    upstream = stack.upstream()
    server_a = stack.server("server-a", keys.env if keys else None)
    entry = server_a
    if keys is not None and args.enter == "other":  # a process other than the tunnel's
        entry = stack.server("server-b", keys.env)
    stack.wait_ready(upstream, server_a, entry)
    tunnel = stack.tunnel("client", server_a, upstream.port, entry, shlex.split(args.client_args))
    clients.get(entry.port, tunnel.host, "/")
    # Idle tunnel connections held by the tunnel's process: does a request cost more
    # when a process holds many of them?
    idle = IdleTunnels(server_a.ws_url, stack.token)
    try:
        if args.idle:
            _raise_fd_limit()
            idle.open(args.idle)
        return _figure(server_a, entry, tunnel, upstream, keys, args)
    finally:
        idle.close()


def _figure(
    server_a: Server,
    entry: Server,
    tunnel: Tunnel,
    upstream: Server,
    keys: KeyPrefix | None,
    args: argparse.Namespace,
) -> str:
    involved: dict[str, Process] = {
        "server-a": server_a,
        "client": tunnel.client,
        "upstream": upstream,
    }
    if entry is not server_a:
        involved["server-b"] = entry
    where = f" ({args.enter} process)" if keys is not None else ""
    measured = _measure(involved, f"http://127.0.0.1:{entry.port}/", entry.port, tunnel.host, args)
    return f"{args.figure} {args.layer}{where}: {measured}"


def _measure(
    involved: dict[str, Process],
    url: str,
    port: int,
    host: str,
    args: argparse.Namespace,
    ca: Path | None = None,
) -> str:
    """``args.figure`` (``get`` with wrk, or a transfer) at ``url`` (``port``, ``host``),
    with the CPU each of ``involved`` took meanwhile."""
    if args.figure == "get":
        result = with_cpu(
            involved,
            lambda: wrk.run(
                url,
                host=host,
                connections=args.connections,
                seconds=args.seconds,
                headers=args.header,
            ).as_dict(),
        )
        figure = f"{result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms"
        if result.get("non_2xx"):
            figure += f", {result['non_2xx']} not 2xx"
    else:
        move = clients.download if args.direction == "down" else clients.upload
        size = int(args.mb * 1e6)
        result = with_cpu(involved, lambda: {"mb_s": move(port, host, size, ca=ca).mb_per_s})
        figure = f"{result['mb_s']:.1f} MB/s"
    cores = ", ".join(f"{role} {value:.2f}" for role, value in result["cpu_cores"].items())
    return f"{figure}  (cores: {cores})"


def measure_caddy(stack: Stack, keys: KeyPrefix | None, args: argparse.Namespace) -> str:
    """``get`` or ``transfer`` through Caddy: one process in memory, or two on Redis."""
    name = "caddy_redis" if keys is not None else "caddy_memory"
    stack.prepare_database()
    upstream = stack.upstream()
    stack.wait_ready(upstream)
    deployment_stack = caddy.stack_for(stack, name, keys.url if keys else None)
    try:
        deployment = caddy.connect(
            caddy.prepare(stack, name, deployment_stack),
            upstream.port,
            tuple(shlex.split(args.client_args)),
        )
        clients.get(deployment.port, deployment.host, ca=deployment.ca)
        involved = {**deployment.processes, "upstream": upstream}
        measured = _measure(
            involved, deployment.url, deployment.port, deployment.host, args, deployment.ca
        )
    finally:
        deployment_stack.stop()
    return f"{args.figure} {name}: {measured}"


def _raise_fd_limit() -> None:
    """One socket per idle tunnel here too, beyond many systems' default soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def probe_idle(args: argparse.Namespace, settings: dict[str, str]) -> int:
    """``idle``: on a private Redis (for its counters) or in memory."""
    with tempfile.TemporaryDirectory(prefix="luminet-probe-") as work:
        logs = args.logs or Path(work) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        redis = PrivateRedis(Path(work)) if args.layer == "redis" else None
        stack = Stack(Path(work), logs, settings)
        keys = None
        try:
            if redis is not None:
                redis.start()
                keys = KeyPrefix(redis.url, "lmbench")
            stack.prepare_database()
            print(measure_idle(stack, keys, args))
        except (HarnessError, RuntimeError, OSError, websocket.WebSocketException) as exc:
            print(f"probe failed: {exc}", file=sys.stderr)
            return 1
        finally:
            stack.close()
            if keys is not None:
                keys.close()
            if redis is not None:
                redis.stop()
    return 0


def measure_idle(stack: Stack, keys: KeyPrefix | None, args: argparse.Namespace) -> str:
    """What ``--tunnels`` idle tunnel connections cost one server (and Redis) each."""
    count = args.tunnels
    _raise_fd_limit()
    server = stack.server("server-a", keys.env if keys else None)
    stack.wait_ready(server)
    info = _RedisInfo(keys.url) if keys is not None else None
    tunnels = IdleTunnels(server.ws_url, stack.token)
    try:
        tunnels.open(1)  # imports, the database connection: not counted
        time.sleep(2.0)
        before = (server.rss(), procfs.open_fds(server.pid), info.snapshot() if info else None)
        started = time.monotonic()
        tunnels.open(count)
        opened = time.monotonic() - started
        time.sleep(2.0)
        after = (server.rss(), procfs.open_fds(server.pid), info.snapshot() if info else None)
        listing = _time_listing(server.port, stack.api_key, count + 1)
        # Idle: what remains is the heartbeats (and whatever polls Redis).
        idle_from = info.snapshot() if info else None
        cpu_from, idle_started = server.cpu_seconds(), time.monotonic()
        time.sleep(args.seconds)
        cpu_to, idle_seconds = server.cpu_seconds(), time.monotonic() - idle_started
        idle_to = info.snapshot() if info else None
        if not server.running():
            raise HarnessError(f"{server.name} died:\n{server.describe(30)}")
    finally:
        tunnels.close()
    lines = [
        f"idle {args.layer}: {count} tunnel connections opened in {opened:.1f} s "
        f"({count / opened:.0f}/s)",
        f"  server RSS {(after[0] - before[0]) / count / 1e3:.1f} KB per connection "
        f"({before[0] / 1e6:.0f} -> {after[0] / 1e6:.0f} MB), "
        f"{(after[1] - before[1]) / count:.2f} file descriptors per connection",
        f"  the live list (GET /api/tunnels) of {count + 1} tunnels: {listing * 1e3:.0f} ms "
        "(median of 3)",
        f"  server CPU while idle for {idle_seconds:.0f} s: "
        f"{(cpu_to - cpu_from) / idle_seconds / count * 1e6:.1f} µs per second per connection "
        f"({(cpu_to - cpu_from) / idle_seconds:.3f} cores in all)",
    ]
    if before[2] is not None and after[2] is not None and idle_from and idle_to:
        keys_added = after[2]["keys"] - before[2]["keys"]
        memory = after[2]["used_memory"] - before[2]["used_memory"]
        lines.append(
            f"  Redis: {keys_added / count:.2f} keys and {memory / count:.0f} bytes per "
            f"connection; {after[2]['clients']} clients connected"
        )
        seconds = idle_to["at"] - idle_from["at"]
        calls = {
            name: (calls - idle_from["calls"].get(name, (0, 0))[0]) / seconds
            for name, (calls, _) in idle_to["calls"].items()
        }
        busy = sorted(((rate, name) for name, rate in calls.items() if rate > 0), reverse=True)
        total = sum(rate for rate, _ in busy)
        detail = ", ".join(f"{name} {rate:.1f}" for rate, name in busy)
        # Commands inside a script count in the script's time too: EVAL's time is all of it.
        spent = sum(
            usec - idle_from["calls"].get(name, (0, 0))[1]
            for name, (_, usec) in idle_to["calls"].items()
            if name.startswith("eval") or name in ("set", "get", "bzpopmin", "del", "mget")
        )
        lines.append(
            f"  Redis commands while idle for {seconds:.0f} s: {total:.1f}/s in all, "
            f"{total / count:.3f}/s per connection ({detail}); "
            f"{spent / seconds / count:.2f} µs of Redis CPU per second per connection"
        )
    return "\n".join(lines)


class _RedisInfo:
    """Counters of a private Redis: keys, memory, clients, calls per command."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=10)

    def snapshot(self) -> dict[str, Any]:
        stats = self._client.info("commandstats")
        memory = self._client.info("memory")
        clients = self._client.info("clients")
        return {
            "at": time.monotonic(),
            "keys": self._client.dbsize(),
            "used_memory": memory["used_memory"],
            "clients": clients["connected_clients"],
            "calls": {
                name.removeprefix("cmdstat_"): (value["calls"], value["usec"])
                for name, value in stats.items()
                # Our own INFO and DBSIZE calls are not the server's.
                if name not in ("cmdstat_info", "cmdstat_dbsize")
            },
        }


def _time_listing(port: int, api_key: str, expected: int) -> float:
    """Seconds for the admin API's live list, median of 3; checks it lists ``expected``."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        answer = requests.get(
            f"http://127.0.0.1:{port}/api/tunnels",
            headers={"Host": "localhost", "Authorization": f"Bearer {api_key}"},
            timeout=120,
        )
        times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise HarnessError(f"/api/tunnels answered {answer.status_code}: {answer.text[:200]}")
        if len(answer.json()) != expected:
            raise HarnessError(f"/api/tunnels lists {len(answer.json())}, not {expected}")
    return sorted(times)[1]


def measure_queued(stack: Stack, keys: KeyPrefix | None, args: argparse.Namespace) -> str:
    with socket.socket() as deaf:
        # Small buffers for the connections it accepts: the kernel takes little for it.
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        deaf.bind(("127.0.0.1", 0))
        deaf.listen(1024)  # the kernel accepts; nobody ever reads
        server_a = stack.server("server-a", keys.env if keys else None)
        entry = stack.server("server-b", keys.env) if keys else server_a
        stack.wait_ready(server_a, entry)
        tunnel = stack.tunnel(
            "client", server_a, deaf.getsockname()[1], entry, shlex.split(args.client_args)
        )
        involved = {"server-a": server_a, "client": tunnel.client}
        if entry is not server_a:
            involved["server-b"] = entry
        before = {role: procfs.rss(p.pid) for role, p in involved.items()}
        for process in involved.values():
            procfs.reset_peak_rss(process.pid)
        size = int(args.mb * 1024 * 1024)
        head = (
            f"POST /upload HTTP/1.1\r\nHost: {tunnel.host}\r\nContent-Length: {size}\r\n\r\n"
        ).encode()
        uploads = [socket.create_connection(("127.0.0.1", entry.port)) for _ in range(args.uploads)]
        try:
            for upload in uploads:
                upload.sendall(head)
            sent = clients.fill(uploads, size)
            grown = {
                role: (procfs.peak_rss(p.pid) - before[role]) / 1e6 for role, p in involved.items()
            }
        finally:
            for upload in uploads:
                upload.close()
    figures = ", ".join(f"{role} +{mb:.0f} MB" for role, mb in grown.items())
    return (
        f"queued {args.layer}: {args.uploads} uploads of {args.mb:g} MiB, "
        f"{sent / 1e6:.0f} MB taken: {figures}"
    )


if __name__ == "__main__":
    sys.exit(main())
