"""One figure, quickly: for measuring a change back to back (docs/performance.md).

    python -m bench.probe get --layer memory --connections 50
    python -m bench.probe transfer --layer redis --direction down --mb 200
    python -m bench.probe queued --uploads 150 --mb 2
    python -m bench.probe get --connections 50 --client-args=--no-inspect

``queued`` sends that many uploads at once to a local server that accepts and
never reads (issue 8, defect 6), until no socket takes another byte, and reports
how much each process grew (peak RSS over its RSS before).

Starts only what that figure needs (the upstream, one server, or two on Redis
with the request entering the second, and a client), prints the figure with
the CPU cores each process kept busy, and stops everything. The full bench
(``python -m bench``) remains the reference; this is for the loop of profiling.
"""

from __future__ import annotations

import argparse
import shlex
import socket
import sys
import tempfile
from pathlib import Path

from harness import HarnessError, KeyPrefix, Process, procfs

from . import clients, wrk
from .run import with_cpu
from .stack import Stack

REDIS_URL = "redis://127.0.0.1:6379/10"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__)
    parser.add_argument("figure", choices=["get", "transfer", "queued"])
    parser.add_argument("--layer", choices=["memory", "redis"], default="memory")
    parser.add_argument("--connections", type=int, default=1, help="for get (1)")
    parser.add_argument("--seconds", type=float, default=5.0, help="for get (5)")
    parser.add_argument("--direction", choices=["down", "up"], default="down")
    parser.add_argument("--mb", type=float, default=200.0, help="for transfer (200), queued")
    parser.add_argument("--uploads", type=int, default=150, help="for queued (150)")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument(
        "--client-args",
        default="",
        help="more flags for the client, as one shell-quoted string (e.g. --no-inspect)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        keys = KeyPrefix(args.redis_url, "lmbench") if args.layer == "redis" else None
    except HarnessError as exc:
        print(exc, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="luminet-probe-") as work:
        logs = Path(work) / "logs"
        logs.mkdir()
        stack = Stack(Path(work), logs)
        try:
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
    if keys is not None:  # the request enters a process other than the tunnel's
        entry = stack.server("server-b", keys.env)
    stack.wait_ready(upstream, server_a, entry)
    tunnel = stack.tunnel("client", server_a, upstream.port, entry, shlex.split(args.client_args))
    clients.get(entry.port, tunnel.host, "/")
    involved: dict[str, Process] = {
        "server-a": server_a,
        "client": tunnel.client,
        "upstream": upstream,
    }
    if entry is not server_a:
        involved["server-b"] = entry
    if args.figure == "get":
        result = with_cpu(
            involved,
            lambda: wrk.run(
                f"http://127.0.0.1:{entry.port}/",
                host=tunnel.host,
                connections=args.connections,
                seconds=args.seconds,
            ).as_dict(),
        )
        figure = f"{result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms"
    else:
        move = clients.download if args.direction == "down" else clients.upload
        size = int(args.mb * 1e6)
        result = with_cpu(involved, lambda: {"mb_s": move(entry.port, tunnel.host, size).mb_per_s})
        figure = f"{result['mb_s']:.1f} MB/s"
    cores = ", ".join(f"{role} {value:.2f}" for role, value in result["cpu_cores"].items())
    return f"{args.figure} {args.layer}: {figure}  (cores: {cores})"


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
