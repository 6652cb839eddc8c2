"""``python -m bench``: Luminet against direct access and bare daphne, every figure from one run.

Starts everything on loopback (upstream, bare daphne, our servers and clients;
Redis from ``REDIS_URL``), measures the six sections of issue 4 and the
deployment behind Caddy of issue 12 (``bench/caddy.py``), prints the tables and
writes the same figures as JSON. ``docs/performance.md`` explains each figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket

from client import protocol
from harness import ROOT, HarnessError, KeyPrefix, Process, Server
from harness.stack import Stack as CaddyStack

from . import caddy, clients, report, wrk
from .idle import IdleTunnels
from .report import get as _get
from .stack import CLIENT_START_TIMEOUT, BenchError, Stack, Tunnel

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
#: Seconds of the bench's own sequential-GET latency check per target.
SEQUENTIAL_SECONDS = 2.0
#: Seconds the client gets to end a stream whose public reader went away.
STREAM_END_TIMEOUT = 5.0
RESULTS = ROOT / "bench" / "results"

#: Failures of one measurement: recorded in its cell, and the run goes on.
MEASURE_ERRORS = (
    HarnessError,
    clients.HTTPError,
    OSError,
    RuntimeError,
    ValueError,
    subprocess.SubprocessError,
    websocket.WebSocketException,
    protocol.ProtocolError,
)


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one run."""

    #: Seconds of each wrk run, and of the wrk warm-up before each target.
    duration: float
    warmup: float
    #: Bytes of each download and upload.
    transfer_bytes: int
    #: Concurrent requests that each wait ``slow_delay`` seconds upstream.
    slow_count: int
    slow_delay: float
    idle_tunnels: int
    startup_runs: int
    #: The slow reader: response size, reading rate (bytes/s), cap on reading time.
    reader_bytes: int
    reader_rate: float
    reader_cap: float
    reader_rcvbuf: int
    #: Seconds to let a server settle before reading its RSS.
    settle: float
    #: Bytes of each download and upload behind Caddy (issue 12 says 200 MB).
    caddy_transfer_bytes: int


FULL = Settings(
    duration=5.0,
    warmup=1.0,
    transfer_bytes=100_000_000,
    slow_count=50,
    slow_delay=1.0,
    idle_tunnels=200,
    startup_runs=3,
    reader_bytes=1_000_000_000,
    reader_rate=10e6,
    reader_cap=15.0,
    reader_rcvbuf=32 * 1024,
    settle=1.0,
    caddy_transfer_bytes=200_000_000,
)
SMOKE = dataclasses.replace(
    FULL,
    duration=1.0,
    warmup=0.0,
    transfer_bytes=5_000_000,
    slow_delay=0.2,
    idle_tunnels=20,
    startup_runs=1,
    reader_cap=1.0,
    settle=0.2,
    caddy_transfer_bytes=5_000_000,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="seconds, not minutes: check every section runs"
    )
    parser.add_argument(
        "--json", type=Path, default=RESULTS / "latest.json", help="where to write the figures"
    )
    parser.add_argument(
        "--logs",
        type=Path,
        help="directory for the output of every process started, emptied first "
        "(default: next to the JSON, e.g. bench/results/latest-logs/)",
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 5)")
    parser.add_argument(
        "--transfer-mb",
        type=float,
        help="MB per download and upload (100; 200 behind Caddy): both, if given",
    )
    parser.add_argument("--idle-tunnels", type=int, help="idle tunnels opened (200)")
    parser.add_argument("--reader-cap", type=float, help="seconds of slow reading at most (15)")
    parser.add_argument(
        "--no-redis", action="store_true", help="skip the Redis figures (else Redis is required)"
    )
    parser.add_argument(
        "--no-caddy", action="store_true", help="skip the rows behind Caddy (issue 12)"
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    settings = SMOKE if args.smoke else FULL
    overrides: dict[str, Any] = {}
    if args.duration is not None:
        overrides["duration"] = args.duration
    if args.transfer_mb is not None:
        overrides["transfer_bytes"] = int(args.transfer_mb * 1e6)
        overrides["caddy_transfer_bytes"] = int(args.transfer_mb * 1e6)
    if args.idle_tunnels is not None:
        overrides["idle_tunnels"] = args.idle_tunnels
    if args.reader_cap is not None:
        overrides["reader_cap"] = args.reader_cap
    return dataclasses.replace(settings, **overrides)


class _Terminated(Exception):
    """SIGTERM arrived: unwind so every ``finally`` stops what it started."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    if wrk.find() is None and not args.smoke:
        print(wrk.INSTALL_HINT, file=sys.stderr)
        return 2
    redis_keys: KeyPrefix | None = None
    redis_skip: str | None = "--no-redis" if args.no_redis else None
    if not args.no_redis:
        try:
            redis_keys = KeyPrefix(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL, "lmbench")
        except HarnessError as exc:
            if not args.smoke:
                print(f"{exc} (set REDIS_URL, or pass --no-redis)", file=sys.stderr)
                return 2
            redis_skip = str(exc)
    signal.signal(signal.SIGTERM, _on_sigterm)
    logdir: Path = args.logs or args.json.with_name(f"{args.json.stem}-logs")
    if logdir.exists():
        shutil.rmtree(logdir)
    logdir.mkdir(parents=True)
    run = Run(
        settings,
        smoke=args.smoke,
        redis_skip=redis_skip,
        caddy_skip="--no-caddy" if args.no_caddy else caddy.available(),
    )
    try:
        with tempfile.TemporaryDirectory(prefix="luminet-bench-") as work:
            stack = Stack(Path(work), logdir)
            try:
                run.execute(stack, redis_keys)
            finally:
                try:
                    stack.close()
                finally:
                    if redis_keys is not None:
                        redis_keys.close()
    except MEASURE_ERRORS as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"process output in {logdir}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Terminated):
        print("bench interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    run.finish(logdir)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(run.results, indent=2) + "\n")
    print(report.table(run.results))
    for note in run.results["notes"]:
        print(f"note: {note}")
    for name, found in run.results["log_problems"].items():
        print(f"log: {name}: {found['count']} suspicious lines, e.g. {found['first'][0]!r}")
    for error in run.errors:
        print(f"ERROR: {error}", file=sys.stderr)
    print(f"figures written to {args.json}; process output in {logdir}")
    return 1 if run.errors else 0


class Run:
    """One bench run: the figures, the notes and the errors met on the way."""

    def __init__(
        self,
        settings: Settings,
        *,
        smoke: bool,
        redis_skip: str | None,
        caddy_skip: str | None = None,
    ) -> None:
        self.settings = settings
        self.redis_skip = redis_skip
        self.caddy_skip = caddy_skip
        self.errors: list[str] = []
        self.started = time.monotonic()
        self.results: dict[str, Any] = {
            "meta": {
                "mode": "smoke" if smoke else "full",
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "cpus": os.cpu_count(),
                "load_before": _load(),
                "python": platform.python_version(),
                "wrk": _wrk_version(),
                "commit": _commit(),
                "redis": redis_skip or "used",
                "caddy": caddy_skip or "used",
                "settings": dataclasses.asdict(settings),
            },
            "notes": [],
        }

    def note(self, text: str) -> None:
        self.results["notes"].append(text)

    def measure(self, section: dict[str, Any], key: str, what: str, fn: Callable[[], Any]) -> None:
        """Store ``fn()`` at ``section[key]``, or the error that stopped it."""
        try:
            section[key] = fn()
        except MEASURE_ERRORS as exc:
            message = f"{type(exc).__name__}: {exc}".strip()
            section[key] = {"error": message}
            self.errors.append(f"{what}: {message}")

    def execute(self, stack: Stack, redis_keys: KeyPrefix | None) -> None:
        self.caddy_stacks: dict[str, CaddyStack] = {}
        try:
            self._execute(stack, redis_keys)
        finally:
            for caddy_stack in self.caddy_stacks.values():
                caddy_stack.stop()

    def _execute(self, stack: Stack, redis_keys: KeyPrefix | None) -> None:
        stack.prepare_database()
        redis_url = redis_keys.url if redis_keys is not None else None
        # The stacks behind Caddy start meanwhile (most of it is waiting on processes);
        # they are idle until section 7, and started before anything is measured.
        with ThreadPoolExecutor(2) as pool:
            preparing = self.prepare_caddy(pool, stack, redis_url)
            self._start_and_measure(stack, redis_keys, preparing)

    def _start_and_measure(
        self,
        stack: Stack,
        redis_keys: KeyPrefix | None,
        preparing: dict[str, Future[caddy.Prepared]],
    ) -> None:
        s = self.settings
        # Every server starts at once; the idle-memory ones stay idle until section 4.
        upstream = stack.upstream()
        hello = stack.bare_daphne()
        memory = stack.server("server-memory", None)
        servers = [upstream, hello, memory]
        idle_servers = {"tunnel_memory": stack.server("server-idle-memory", None)}
        redis_a = redis_b = None
        if redis_keys is not None:
            redis_a = stack.server("server-redis-a", redis_keys.env)
            redis_b = stack.server("server-redis-b", redis_keys.env)
            idle_servers["tunnel_redis"] = stack.server("server-idle-redis", redis_keys.env)
            servers += [redis_a, redis_b]
        stack.wait_ready(*servers, *idle_servers.values())
        tunnels = {"tunnel_memory": stack.tunnel("client-memory", memory, upstream.port, memory)}
        if redis_a is not None and redis_b is not None:
            # The client holds its tunnel on A; every public request enters at B.
            tunnels["tunnel_redis"] = stack.tunnel("client-redis", redis_a, upstream.port, redis_b)
        targets = {
            "direct": (upstream.port, "127.0.0.1"),
            **{name: (t.entry_port, t.host) for name, t in tunnels.items()},
            "daphne_hello": (hello.port, "127.0.0.1"),
        }
        for name, (port, host) in targets.items():
            status, body = clients.get(port, host)
            if (status, body) != (200, b"hello"):
                raise BenchError(f"{name} answered {status} {body[:200]!r} instead of hello")

        prepared = self.caddy_prepared(preparing)
        idle: dict[str, Any] = {"tunnels": s.idle_tunnels, "client": {}}
        time.sleep(s.settle)
        for name, tunnel in tunnels.items():
            self.measure(
                idle["client"],
                name,
                "client idle RSS",
                lambda t=tunnel: {"rss_bytes": t.client.rss()},
            )

        # The processes each target keeps busy, for the CPU figures of sections 1 and 2.
        involved: dict[str, dict[str, Process]] = {
            "direct": {"upstream": upstream},
            "tunnel_memory": {
                "server": memory,
                "client": tunnels["tunnel_memory"].client,
                "upstream": upstream,
            },
            "daphne_hello": {"daphne": hello},
        }
        if redis_a is not None and redis_b is not None:
            involved["tunnel_redis"] = {
                "server-a": redis_a,
                "server-b": redis_b,
                "client": tunnels["tunnel_redis"].client,
                "upstream": upstream,
            }
        self.results["small_get"] = self.small_get(targets, involved)
        self.results["transfer"] = self.transfer(targets, involved)
        self.results["concurrent_slow"] = self.concurrent_slow(tunnels)
        layer_servers = {"tunnel_memory": memory}
        if redis_a is not None:
            layer_servers["tunnel_redis"] = redis_a
        self.results["startup"] = self.startup(stack, layer_servers, tunnels, upstream.port)
        self.results["idle_memory"] = self.idle_memory(idle, stack.token, idle_servers)
        processes = {"tunnel_memory": {"server": memory}}
        if redis_a is not None and redis_b is not None:
            processes["tunnel_redis"] = {"server-a (tunnel)": redis_a, "server-b (entry)": redis_b}
        self.results["slow_reader"] = self.slow_reader(tunnels, processes)
        self.results["caddy"] = self.behind_caddy(prepared, upstream)

    def _layers(self, section: dict[str, Any], tunnels: dict[str, Tunnel]) -> list[str]:
        """The tunnel layers to measure; marks Redis as skipped in ``section`` when absent."""
        if "tunnel_redis" not in tunnels:
            section["tunnel_redis"] = {"skipped": self.redis_skip or "no Redis"}
        return list(tunnels)

    # 1. small GET

    def small_get(
        self, targets: dict[str, tuple[int, str]], involved: dict[str, dict[str, Process]]
    ) -> dict[str, Any]:
        s = self.settings
        if wrk.find() is None:
            self.note(f"small GET skipped: {wrk.INSTALL_HINT}")
            return {"skipped": wrk.INSTALL_HINT}
        section: dict[str, Any] = {"duration_s": s.duration, "tool": "wrk -t1 --latency"}
        if "tunnel_redis" not in targets:
            section["tunnel_redis"] = {"skipped": self.redis_skip or "no Redis"}
        for name, (port, host) in targets.items():
            url = f"http://127.0.0.1:{port}/"
            header = None if name in ("direct", "daphne_hello") else host
            entry: dict[str, Any] = {}
            section[name] = entry
            if s.warmup:
                self.measure(
                    entry,
                    "warmup",
                    f"small GET warm-up, {name}",
                    lambda u=url, h=header: wrk.run(
                        u, host=h, connections=50, seconds=s.warmup
                    ).as_dict(),
                )
            self.measure(
                entry,
                "1_sequential",
                f"small GET, {name}, sequential client",
                lambda p=port, h=host: dataclasses.asdict(
                    clients.sequential_gets(p, h, min(s.duration, SEQUENTIAL_SECONDS))
                ),
            )
            for conns in (1, 50):
                self.measure(
                    entry,
                    str(conns),
                    f"small GET, {name}, {conns} conns",
                    lambda u=url, h=header, c=conns, n=name: with_cpu(
                        involved[n],
                        lambda: wrk.run(u, host=h, connections=c, seconds=s.duration).as_dict(),
                    ),
                )
                got = entry[str(conns)]
                if got.get("non_2xx") or got.get("socket_errors"):
                    self.note(
                        f"small GET, {name}, {conns} conns: {got['non_2xx']} non-2xx answers, "
                        f"{got['socket_errors']} socket errors in {got['requests']} requests"
                    )
        return section

    # 2. transfers

    def transfer(
        self, targets: dict[str, tuple[int, str]], involved: dict[str, dict[str, Process]]
    ) -> dict[str, Any]:
        size = self.settings.transfer_bytes
        section: dict[str, Any] = {"size_bytes": size, "download": {}, "upload": {}}
        for name, (port, host) in targets.items():
            if name == "daphne_hello":
                continue
            for way, fn in (("download", clients.download), ("upload", clients.upload)):
                self.measure(
                    section[way],
                    name,
                    f"{way}, {name}",
                    lambda f=fn, p=port, h=host, n=name: with_cpu(
                        involved[n], lambda: _transfer(f(p, h, size))
                    ),
                )
        if "tunnel_redis" not in targets:
            skipped = {"skipped": self.redis_skip or "no Redis"}
            section["download"]["tunnel_redis"] = section["upload"]["tunnel_redis"] = skipped
        return section

    # 3. concurrent slow requests

    def concurrent_slow(self, tunnels: dict[str, Tunnel]) -> dict[str, Any]:
        s = self.settings
        section: dict[str, Any] = {"requests": s.slow_count, "delay_s": s.slow_delay}
        path = f"/sleep/{round(s.slow_delay * 1000)}"
        for name in self._layers(section, tunnels):
            tunnel = tunnels[name]
            self.measure(
                section,
                name,
                f"{s.slow_count} slow requests, {name}",
                lambda t=tunnel: {
                    "wall_s": clients.concurrent_gets(
                        t.entry_port, t.host, path, s.slow_count, timeout=s.slow_delay + 30
                    )
                },
            )
        return section

    # 5. client start-up

    def startup(
        self,
        stack: Stack,
        servers: dict[str, Server],
        tunnels: dict[str, Tunnel],
        upstream_port: int,
    ) -> dict[str, Any]:
        runs = self.settings.startup_runs
        section: dict[str, Any] = {"runs": runs}
        for name in self._layers(section, tunnels):
            entry_port = tunnels[name].entry_port
            self.measure(
                section,
                name,
                f"client start-up, {name}",
                lambda n=name, e=entry_port: _startup(stack, n, servers[n], e, upstream_port, runs),
            )
        return section

    # 4. idle tunnels

    def idle_memory(
        self, section: dict[str, Any], token: str, servers: dict[str, Server]
    ) -> dict[str, Any]:
        if "tunnel_redis" not in servers:
            section["tunnel_redis"] = {"skipped": self.redis_skip or "no Redis"}
            section["client"].setdefault("tunnel_redis", {"skipped": self.redis_skip or "no Redis"})
        for name, server in servers.items():
            self.measure(
                section,
                name,
                f"idle tunnels, {name}",
                lambda srv=server: _idle(srv, token, self.settings),
            )
            server.stop()
        return section

    # 6. slow reader

    def slow_reader(
        self, tunnels: dict[str, Tunnel], processes: dict[str, dict[str, Server]]
    ) -> dict[str, Any]:
        s = self.settings
        section: dict[str, Any] = {
            "size_bytes": s.reader_bytes,
            "rate_bytes_s": s.reader_rate,
            "cap_s": s.reader_cap,
            "rcvbuf_bytes": s.reader_rcvbuf,
        }
        for name in self._layers(section, tunnels):
            self.measure(
                section,
                name,
                f"slow reader, {name}",
                lambda n=name: _slow_reader(tunnels[n], processes[n], s),
            )
            end = _get(section, name, "client_stream_end")
            if end is not None and end["outcome"] is None:
                self.note(
                    f"slow reader, {name}: the client had not ended the abandoned 1 GB stream "
                    f"{STREAM_END_TIMEOUT:g} s after the reader closed its connection"
                )
        return section

    # 7. behind Caddy (issue 12)

    def prepare_caddy(
        self, pool: ThreadPoolExecutor, stack: Stack, redis_url: str | None
    ) -> dict[str, Future[caddy.Prepared]]:
        """Start the stacks behind Caddy in ``pool``: one process in memory, and two on
        Redis if there is Redis."""
        if self.caddy_skip is not None:
            return {}
        for name in caddy.VARIANTS:
            if name == "caddy_memory" or redis_url is not None:
                self.caddy_stacks[name] = caddy.stack_for(stack, name, redis_url)
        return {
            name: pool.submit(caddy.prepare, stack, name, caddy_stack)
            for name, caddy_stack in self.caddy_stacks.items()
        }

    def caddy_prepared(self, preparing: dict[str, Future[caddy.Prepared]]) -> dict[str, Any]:
        """Wait for the stacks behind Caddy; a stack that failed to start is its error."""
        ready: dict[str, Any] = {}
        for name, future in preparing.items():
            try:
                ready[name] = future.result()
            except MEASURE_ERRORS as exc:
                message = f"{type(exc).__name__}: {exc}".strip()
                ready[name] = {"error": message}
                self.errors.append(f"behind Caddy, {name}: {message}")
        return ready

    def behind_caddy(self, prepared: dict[str, Any], upstream: Server) -> dict[str, Any]:
        """Small GETs and transfers through Caddy: two processes on Redis against one in
        memory."""
        s = self.settings
        if self.caddy_skip is not None:
            self.note(f"behind Caddy skipped: {self.caddy_skip}")
            return {"skipped": self.caddy_skip}
        section: dict[str, Any] = {
            "duration_s": s.duration,
            "size_bytes": s.caddy_transfer_bytes,
            "tool": "wrk -t1 --latency over https",
        }
        if "caddy_redis" not in prepared:
            section["caddy_redis"] = {"skipped": self.redis_skip or "no Redis"}
        deployments: dict[str, caddy.Deployment] = {}
        for name, ready in prepared.items():
            if isinstance(ready, dict):
                section[name] = ready
                continue
            try:
                deployments[name] = caddy.connect(ready, upstream.port)
            except MEASURE_ERRORS as exc:
                message = f"{type(exc).__name__}: {exc}".strip()
                section[name] = {"error": message}
                self.errors.append(f"behind Caddy, {name}: {message}")
        for name, deployment in deployments.items():
            section[name] = self._caddy_get(deployment, upstream)
        for name, deployment in deployments.items():
            self._caddy_transfer(section[name], deployment, upstream)
        return section

    def _caddy_get(self, deployment: caddy.Deployment, upstream: Server) -> dict[str, Any]:
        s = self.settings
        name = deployment.name
        involved = {**deployment.processes, "upstream": upstream}
        entry: dict[str, Any] = {"processes": len(deployment.stack.servers)}
        check = clients.get(deployment.port, deployment.host, ca=deployment.ca)
        if check != (200, b"hello"):
            entry["error"] = f"answered {check[0]} {check[1][:200]!r} instead of hello"
            self.errors.append(f"behind Caddy, {name}: {entry['error']}")
            return entry
        before = deployment.counters("luminet_deliveries_total", "path")
        if s.warmup:
            self.measure(
                entry,
                "warmup",
                f"behind Caddy, GET warm-up, {name}",
                lambda: caddy.small_get(deployment, 50, s.warmup).as_dict(),
            )
        self.measure(
            entry,
            "1_sequential",
            f"behind Caddy, GET, {name}, sequential client",
            lambda: dataclasses.asdict(
                clients.sequential_gets(
                    deployment.port,
                    deployment.host,
                    min(s.duration, SEQUENTIAL_SECONDS),
                    ca=deployment.ca,
                )
            ),
        )
        for conns in (1, 50):
            self.measure(
                entry,
                str(conns),
                f"behind Caddy, GET, {name}, {conns} conns",
                lambda c=conns: with_cpu(
                    involved, lambda: caddy.small_get(deployment, c, s.duration).as_dict()
                ),
            )
            got = entry[str(conns)]
            if got.get("non_2xx") or got.get("socket_errors"):
                self.note(
                    f"behind Caddy, GET, {name}, {conns} conns: {got['non_2xx']} non-2xx "
                    f"answers, {got['socket_errors']} socket errors in {got['requests']} requests"
                )
        # How the requests reached the tunnel: inside the process they entered (local),
        # or through the channel layer to another one.
        after = deployment.counters("luminet_deliveries_total", "path")
        entry["deliveries"] = {
            path: after.get(path, 0.0) - before.get(path, 0.0) for path in ("local", "layer")
        }
        return entry

    def _caddy_transfer(
        self, entry: dict[str, Any], deployment: caddy.Deployment, upstream: Server
    ) -> None:
        if "error" in entry:
            return
        size = self.settings.caddy_transfer_bytes
        involved = {**deployment.processes, "upstream": upstream}
        for way, fn in (("download", clients.download), ("upload", clients.upload)):
            self.measure(
                entry,
                way,
                f"behind Caddy, {way}, {deployment.name}",
                lambda f=fn: with_cpu(
                    involved,
                    lambda: _transfer(f(deployment.port, deployment.host, size, ca=deployment.ca)),
                ),
            )

    def finish(self, logdir: Path) -> None:
        meta = self.results["meta"]
        meta["load_after"] = _load()
        meta["seconds"] = round(time.monotonic() - self.started, 1)
        self.results["ratios"] = report.ratios(self.results)
        self.results["targets"] = report.targets(self.results)
        self.results["errors"] = self.errors
        self.results["log_problems"] = scan_logs(logdir)


def with_cpu(children: dict[str, Process], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` and add the CPU cores each process kept busy meanwhile (1.0 = one core).

    ``load`` is the bench process and wrk; ``other`` is the rest of the machine's
    busy time, which on a shared machine is the noise in the figure.
    """
    before = {role: process.cpu_seconds() for role, process in children.items()}
    load_before = _own_cpu_seconds()
    machine_before = _machine_busy_seconds()
    started = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - started
    cores = {role: (p.cpu_seconds() - before[role]) / wall for role, p in children.items()}
    cores["load"] = (_own_cpu_seconds() - load_before) / wall
    machine = (_machine_busy_seconds() - machine_before) / wall
    cores["other"] = max(0.0, machine - sum(cores.values()))
    result["cpu_cores"] = {role: round(value, 3) for role, value in cores.items()}
    return result


def _own_cpu_seconds() -> float:
    """CPU time of this process and its reaped children (wrk), in seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _machine_busy_seconds() -> float:
    """Busy CPU time of the whole machine since boot, in seconds (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def _transfer(result: clients.Transfer) -> dict[str, Any]:
    return {"mb_s": result.mb_per_s, "bytes": result.bytes, "seconds": result.seconds}


def _startup(
    stack: Stack, name: str, server: Server, entry_port: int, upstream_port: int, runs: int
) -> dict[str, Any]:
    """Start ``python -m client`` ``runs`` times; time its active line and its first 200."""
    active: list[float] = []
    served: list[float] = []
    for n in range(runs):
        client = stack.start_client(f"client-startup-{name}-{n}", server, upstream_port)
        try:
            _, event = client.wait_event("tunnel_active", CLIENT_START_TIMEOUT, poll=0.002)
            active.append(time.perf_counter() - client.started)
            host = f"{event['subdomain']}.localhost"
            deadline = time.monotonic() + 10
            while (status := clients.get(entry_port, host)[0]) != 200:
                if time.monotonic() > deadline:
                    raise BenchError(f"{host} still answers {status} 10 s after the client")
                time.sleep(0.005)
            served.append(time.perf_counter() - client.started)
        finally:
            client.stop()
    return {
        "active_s": active,
        "url_s": served,
        "active_s_median": report.median(active),
        "url_s_median": report.median(served),
    }


def _idle(server: Server, token: str, s: Settings) -> dict[str, Any]:
    """RSS growth of a fresh server from 1 to 1 + N idle tunnels, per tunnel."""
    tunnels = IdleTunnels(server.ws_url, token)
    try:
        # The first tunnel pays for imports and the database connection: not counted.
        tunnels.open(1)
        time.sleep(s.settle)
        before = server.rss()
        started = time.perf_counter()
        tunnels.open(s.idle_tunnels)
        opened = time.perf_counter() - started
        time.sleep(s.settle)
        after = server.rss()
        if not server.running():
            raise BenchError(f"{server.name} died:\n{server.describe(30)}")
    finally:
        tunnels.close()
    return {
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "per_tunnel_bytes": (after - before) / s.idle_tunnels,
        "open_s": opened,
    }


def _slow_reader(tunnel: Tunnel, processes: dict[str, Server], s: Settings) -> dict[str, Any]:
    """Read a huge response at a fixed rate; report the servers' peak RSS meanwhile."""
    for server in processes.values():
        server.reset_peak_rss()
    baseline = {name: server.rss() for name, server in processes.items()}
    sampled = dict(baseline)
    next_sample = 0.0

    def tick() -> None:
        nonlocal next_sample
        now = time.monotonic()
        if now >= next_sample:
            next_sample = now + 0.25
            for name, server in processes.items():
                sampled[name] = max(sampled[name], server.rss())

    result = clients.slow_download(
        tunnel.entry_port,
        tunnel.host,
        s.reader_bytes,
        rate=s.reader_rate,
        cap_seconds=s.reader_cap,
        rcvbuf=s.reader_rcvbuf,
        tick=tick,
    )
    peaks = {name: server.peak_rss() for name, server in processes.items()}
    closed = time.perf_counter()
    # The client reports the stream when it ends: after the reader left, it should stop
    # reading the upstream soon, not stream the rest of the body into the void.
    try:
        _, event = tunnel.client.wait_event(
            "exchange",
            STREAM_END_TIMEOUT,
            where={"method": "GET", "path": f"/bytes/{s.reader_bytes}"},
        )
        stream_end: dict[str, Any] = {
            "status": event["status"],
            "outcome": event["outcome"],
            "failure": event.get("failure"),
            "seconds_after_close": time.perf_counter() - closed,
        }
    except HarnessError:
        stream_end = {"status": None, "outcome": None, "failure": None, "seconds_after_close": None}
    return {
        "client_stream_end": stream_end,
        "read_bytes": result.bytes,
        "read_s": result.seconds,
        "read_mb_s": result.mb_per_s,
        "capped": result.capped,
        "baseline_rss_bytes": baseline,
        "sampled_max_rss_bytes": sampled,
        "peak_rss_by_process": peaks,
        "peak_rss_bytes": max(peaks.values()),
        # What the read itself added, beyond what earlier sections left resident.
        "growth_bytes": max(peaks[name] - baseline[name] for name in peaks),
    }


#: Lines worth a look in a process's output: errors, warnings, 5xx, tunnel drops, and
#: the client's (JSON) reports of exchanges that failed or were not 2xx.
SUSPICIOUS = re.compile(
    r"Traceback|\b(ERROR|CRITICAL|WARNING)\b|\" 5\d\d |"
    r'^\{"event":"(tunnel_down"|exchange",.*"status":(?!2\d\d,)|exchange",.*"outcome":"failed")'
)


def scan_logs(logdir: Path) -> dict[str, dict[str, Any]]:
    """Count suspicious lines per log file (the stacks' in their own directories);
    keep the first few distinct ones."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(logdir.rglob("*.log")):
        count = 0
        first: list[str] = []
        with path.open("r", encoding="utf-8", errors="replace") as log:
            for line in log:
                if SUSPICIOUS.search(line):
                    count += 1
                    line = line.rstrip()
                    if len(first) < 5 and line not in first:
                        first.append(line[:300])
        if count:
            found[str(path.relative_to(logdir))] = {"count": count, "first": first}
    return found


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _wrk_version() -> str | None:
    path = wrk.find()
    if path is None:
        return None
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else None


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head
