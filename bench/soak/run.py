"""``python -m bench.soak``: tunnels, churn and mixed traffic for a long time; nothing may grow.

    python -m bench.soak                          # 30 minutes, 200 tunnels
    python -m bench.soak --minutes 2 --tunnels 20 # a quick check

The run, in order: start the local server, two servers on Redis and every
tunnel; a warm-up with traffic; a quiet baseline (traffic paused, one request
to each tunnel, a sample); traffic and churn until the end of ``--minutes``; the
churn stops, every tunnel comes back, held subdomains expire; a quiet final
sample. Samples are also taken all along. The verdict compares the final sample
with the baseline (``bench/soak/metrics.py``) and counts the requests that
failed when no churn of their tunnel explains it. ``docs/reliability.md`` has
the details.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websocket

from client import protocol
from harness import PYTHON, ROOT, UPSTREAM_RE, HarnessError, KeyPrefix, Server, clean_environ

from ..run import _commit, _load, scan_logs
from ..stack import Stack
from .fleet import Fleet
from .metrics import Row, Sampler, summarize, table
from .traffic import Traffic

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
RESULTS = ROOT / "bench" / "results"
#: LUMINET_SUBDOMAIN_GRACE for the soak: short, so that the names held after the
#: last churn have expired by the final sample.
GRACE = 10.0
#: LUMINET_STATS_INTERVAL: seconds between two stats lines of each server.
STATS_INTERVAL = 2.0
#: Seconds for the tunnels to come up: at start, and again after the churn.
START_TIMEOUT = 60.0
SETTLE_TIMEOUT = 60.0
#: Seconds between two looks at what the tunnels say.
POLL = 0.5

#: Failures that end the run: recorded, and every process is stopped.
RUN_ERRORS = (
    HarnessError,
    OSError,
    RuntimeError,
    ValueError,
    subprocess.SubprocessError,
    websocket.WebSocketException,
    protocol.ProtocolError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="of traffic (30)")
    parser.add_argument("--tunnels", type=int, default=200, help="tunnels in all (200)")
    parser.add_argument(
        "--clients",
        type=int,
        help="of them real `python -m client` processes (a tenth, at least 1)",
    )
    parser.add_argument("--per-driver", type=int, default=50, help="tunnels per driver (50)")
    parser.add_argument("--rate", type=float, default=20.0, help="operations a second (20)")
    parser.add_argument("--workers", type=int, default=16, help="traffic threads (16)")
    parser.add_argument(
        "--churn-period",
        type=float,
        help="seconds between two churns of one tunnel, on average "
        "(a quarter of the run, at most 240)",
    )
    parser.add_argument(
        "--sample-every", type=float, help="seconds between samples (a twelfth of the run, 5-30)"
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    parser.add_argument("--json", type=Path, default=RESULTS / "soak.json")
    parser.add_argument(
        "--logs", type=Path, help="output of every process, emptied first (default: soak-logs/)"
    )
    return parser


@dataclasses.dataclass(frozen=True)
class Settings:
    minutes: float
    tunnels: int
    clients: int
    per_driver: int
    rate: float
    workers: int
    churn_period: float
    sample_every: float
    warmup_s: float
    grace_s: float = GRACE
    stats_interval_s: float = STATS_INTERVAL

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        seconds = args.minutes * 60
        clients = args.clients if args.clients is not None else max(1, round(args.tunnels / 10))
        if args.tunnels < 1 or not 0 <= clients <= args.tunnels:
            raise ValueError("--tunnels must be at least 1 and --clients at most --tunnels")
        positive = (args.minutes, args.rate, args.workers, args.per_driver, args.churn_period or 1)
        if min(positive) <= 0:
            raise ValueError("--minutes, --rate, --workers, --per-driver and --churn-period > 0")
        return cls(
            minutes=args.minutes,
            tunnels=args.tunnels,
            clients=clients,
            per_driver=args.per_driver,
            rate=args.rate,
            workers=args.workers,
            # A short run churns each tunnel a few times too.
            churn_period=args.churn_period or min(240.0, seconds / 4),
            sample_every=args.sample_every or min(30.0, max(5.0, seconds / 12)),
            # Long enough for caches and pools to fill before the baseline.
            warmup_s=min(120.0, max(20.0, seconds * 0.15)),
        )


class _Terminated(Exception):
    """SIGTERM arrived: unwind so every ``finally`` stops what it started."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_args(args)
        keys = KeyPrefix(args.redis_url, "lmsoak")
    except (ValueError, HarnessError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    logdir: Path = args.logs or args.json.with_name(f"{args.json.stem}-logs")
    if logdir.exists():
        shutil.rmtree(logdir)
    logdir.mkdir(parents=True)
    soak = Soak(settings, args.redis_url, keys.prefix)
    try:
        with tempfile.TemporaryDirectory(prefix="luminet-soak-") as work:
            stack = Stack(Path(work), logdir)
            try:
                soak.execute(stack)
            finally:
                try:
                    soak.close()
                    stack.close()
                finally:
                    keys.close()
    except RUN_ERRORS as exc:
        soak.error = f"{type(exc).__name__}: {exc}"
        print(f"soak failed: {soak.error}", file=sys.stderr)
    except (KeyboardInterrupt, _Terminated):
        print("soak interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    results = soak.results(logdir)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(soak.report(results))
    print(f"figures written to {args.json}; process output in {logdir}")
    return 0 if results["verdict"]["passed"] else 1


class Soak:
    """One run: the processes, the samples, and what became of the traffic."""

    def __init__(self, settings: Settings, redis_url: str, prefix: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.prefix = prefix
        self.started = time.monotonic()
        self.wall_started = datetime.datetime.now().isoformat(timespec="seconds")
        self.load_before = _load()
        self.samples: list[dict[str, Any]] = []
        self.error: str | None = None
        self.fleet: Fleet | None = None
        self.traffic: Traffic | None = None
        self.sampler: Sampler | None = None
        self._traffic_started = 0.0
        self._traffic_seconds = 0.0
        self._next_sample = 0.0

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f} s] {text}", flush=True)

    # -- the run -----------------------------------------------------------------------

    def execute(self, stack: Stack) -> None:
        s = self.settings
        stack.prepare_database()
        local_argv = [PYTHON, "-m", "bench.soak.local", "--port", "0"]
        local = stack.own(
            Server("local", local_argv, clean_environ({}), ready=UPSTREAM_RE, logdir=stack.logdir)
        )
        env = {
            "REDIS_URL": self.redis_url,
            "LUMINET_REDIS_PREFIX": self.prefix,
            "LUMINET_STATS_INTERVAL": str(STATS_INTERVAL),
            "LUMINET_SUBDOMAIN_GRACE": str(GRACE),
            # Every connection comes from 127.0.0.1: tunnels and public callers alike.
            "LUMINET_MAX_CONNECTIONS_PER_ADDRESS": str(s.tunnels + 256),
        }
        servers = {name: stack.server(name, env) for name in ("server-a", "server-b")}
        stack.wait_ready(local, *servers.values())
        self.log(f"local server and {len(servers)} servers up; starting {s.tunnels} tunnels")
        self.fleet = fleet = Fleet(
            stack,
            list(servers.values()),
            local.port,
            clients=s.clients,
            driven=s.tunnels - s.clients,
            per_driver=s.per_driver,
            churn_period=s.churn_period,
        )
        fleet.start(START_TIMEOUT + 0.2 * s.tunnels)
        self.log(
            f"{fleet.live_count()} tunnels active ({s.clients} client processes, "
            f"{s.tunnels - s.clients} in {len(fleet.drivers)} drivers)"
        )
        self.sampler = Sampler(
            servers=servers,
            drivers={d.process.name: (d.process, d.slots) for d in fleet.drivers},
            local=local,
            redis_url=self.redis_url,
            prefix=self.prefix,
        )
        ports = [server.port for server in servers.values()]
        self.traffic = traffic = Traffic(fleet, ports, rate=s.rate, workers=s.workers)
        traffic.start()
        self._traffic_started = time.monotonic()
        fleet.churn(True)
        self.log(
            f"traffic at {s.rate:g}/s, each tunnel churned about every {s.churn_period:g} s; "
            f"warm-up {s.warmup_s:.0f} s"
        )
        self._run_until(self._traffic_started + s.warmup_s, "warm-up")
        self._checkpoint("baseline")
        fleet.churn(True)
        self._run_until(self._traffic_started + s.minutes * 60, "run")
        self._checkpoint("final")
        self._traffic_seconds = time.monotonic() - self._traffic_started
        traffic.stop()
        fleet.stop()

    def _checkpoint(self, phase: str) -> None:
        """The same state at the baseline and at the end: the churn stopped, every tunnel
        up, the names released by the last churns expired, no request in flight."""
        assert self.fleet is not None
        self.log(f"{phase}: churn off; waiting for every tunnel to be back")
        self.fleet.settle(SETTLE_TIMEOUT)
        self._run_until(time.monotonic() + GRACE + 2 * STATS_INTERVAL, "settle")
        self._quiet(phase)

    def _run_until(self, deadline: float, phase: str) -> None:
        assert self.fleet is not None
        while (now := time.monotonic()) < deadline:
            self.fleet.poll()
            if now >= self._next_sample:
                self._next_sample = now + self.settings.sample_every
                self._sample(phase)
            time.sleep(min(POLL, max(0.0, deadline - now)))

    def _quiet(self, phase: str) -> None:
        """Pause the traffic, reach every tunnel once, wait for fresh stats, sample, go on."""
        assert self.traffic is not None and self.sampler is not None and self.fleet is not None
        self.traffic.pause()
        self.traffic.sweep(self.fleet.live_subdomains())
        marks = self.sampler.stats_marks()
        deadline = time.monotonic() + 5 * STATS_INTERVAL + 10
        # Two lines: the first may have been counted while the last answer was sent.
        while not self.sampler.fresh_stats(marks, 2):
            if time.monotonic() > deadline:
                raise HarnessError("the servers printed no stats lines")
            self.fleet.poll()
            time.sleep(0.2)
        self._sample(phase)
        if phase == "baseline":
            self.traffic.resume()

    def _sample(self, phase: str) -> None:
        assert self.sampler is not None and self.fleet is not None and self.traffic is not None
        elapsed = time.monotonic() - self._traffic_started
        sample = self.sampler.take(phase, elapsed, self.fleet.live_count())
        done, failed = self.traffic.counts()
        sample["operations"], sample["failures"] = done + failed, failed
        self.samples.append(sample)
        parts = [f"{phase:8} live {sample['live_tunnels']:3}", f"ops {done + failed}"]
        parts[-1] += f" ({failed} failed)"
        for name, figures in sample["processes"].items():
            if name.startswith("server"):
                parts.append(
                    f"{name[-1]}: {figures['rss_mb']:.0f} MB {figures['fds']:.0f} fd "
                    f"{figures.get('tasks', '?')} tasks"
                )
        parts.append(f"redis keys {sample['redis']['tunnel_keys']}+{sample['redis']['other_keys']}")
        self.log("  ".join(parts))

    def close(self) -> None:
        """Stop the traffic and the tunnels if the run did not get to it."""
        if self.traffic is not None:
            self.traffic.stop()
        if self.fleet is not None:
            self.fleet.stop()
        if self.sampler is not None:
            self.sampler.close()

    # -- the results ------------------------------------------------------------------------

    def results(self, logdir: Path) -> dict[str, Any]:
        fleet, traffic = self.fleet, self.traffic
        phases = {s["phase"] for s in self.samples}
        rows = []
        if {"baseline", "final"} <= phases and fleet is not None:
            tunnels = {d.process.name: d.slots for d in fleet.drivers}
            rows = summarize(self.samples, tunnels)
        seconds = self._traffic_seconds or (time.monotonic() - self._traffic_started)
        traffic_summary = traffic.summary(seconds) if traffic is not None else {}
        not_flat = [f"{r.owner} {r.figure}: {r.note}" for r in rows if r.ok is False]
        unplanned = fleet.unplanned if fleet is not None else []
        failed = traffic_summary.get("failed", 0)
        verdict = {
            "flat": bool(rows) and not not_flat,
            "not_flat": not_flat,
            "failed_requests": failed,
            "unplanned_tunnel_drops": len(unplanned),
            "error": self.error,
        }
        verdict["passed"] = verdict["flat"] and not failed and not unplanned and self.error is None
        return {
            "meta": {
                "started": self.wall_started,
                "seconds": round(time.monotonic() - self.started, 1),
                "cpus": os.cpu_count(),
                "load_before": self.load_before,
                "load_after": _load(),
                "python": platform.python_version(),
                "commit": _commit(),
                "redis_prefix": self.prefix,
            },
            "settings": dataclasses.asdict(self.settings),
            "verdict": verdict,
            "summary": [dataclasses.asdict(row) for row in rows],
            "traffic": traffic_summary,
            "churn": {
                "counts": fleet.churns if fleet is not None else {},
                "unplanned": unplanned[:100],
                "drivers": {d.process.name: d.summary for d in fleet.drivers} if fleet else {},
            },
            "samples": self.samples,
            "log_problems": scan_logs(logdir),
        }

    def report(self, results: dict[str, Any]) -> str:
        """The table, the traffic and churn in a few lines, and the verdict."""
        out = []
        if results["summary"]:
            out.append(table(Row(**row) for row in results["summary"]))
        traffic = results["traffic"]
        if traffic:
            out.append(
                f"traffic: {traffic['operations']} operations ({traffic['per_second']}/s, "
                f"{traffic['mb_moved']} MB): {traffic['ok']} ok, "
                f"{traffic['failed_on_purpose']} failed during a churn of their tunnel, "
                f"{traffic['failed']} failed otherwise"
            )
            for kind, figures in traffic["kinds"].items():
                out.append(
                    f"  {kind:10} {figures['ok']:7} ok  {figures['failed_on_purpose']:4} churned  "
                    f"{figures['failed']:4} failed  p50 {figures['p50_ms']} ms  "
                    f"p99 {figures['p99_ms']} ms  max {figures['max_ms']} ms"
                )
            for failure in traffic["unexpected"][:10]:
                out.append(f"  FAILED {failure['kind']} {failure['subdomain']}: {failure['error']}")
        churn = results["churn"]
        out.append(
            "churn: "
            + ", ".join(f"{how} {count}" for how, count in churn["counts"].items())
            + f"; tunnels down without being asked: {len(churn['unplanned'])}"
        )
        for drop in churn["unplanned"][:10]:
            out.append(f"  DOWN {drop}")
        for name, found in results["log_problems"].items():
            example = found["first"][0]
            out.append(f"log: {name}: {found['count']} lines to look at, e.g. {example!r}")
        verdict = results["verdict"]
        if verdict["error"]:
            out.append(f"ERROR: {verdict['error']}")
        flat = "flat" if verdict["flat"] else "NOT FLAT: " + "; ".join(verdict["not_flat"])
        out.append(
            f"verdict: {'PASSED' if verdict['passed'] else 'FAILED'}: {flat}; "
            f"{verdict['failed_requests']} failed requests not caused on purpose; "
            f"{verdict['unplanned_tunnel_drops']} tunnels down without being asked"
        )
        return "\n".join(out)
