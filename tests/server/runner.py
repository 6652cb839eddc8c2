"""Serve :class:`tests.server.app.App` with our server or stock daphne, on a free port.

    python -m tests.server.runner {luminet,stock} [--http-timeout SECONDS]

Builds the server the way daphne's command line does, and prints
``LISTENING 127.0.0.1:<port>`` once the reactor runs.
"""

from __future__ import annotations

import daphne.server  # isort: skip  (installs the asyncio reactor before Twisted is used)

import argparse
import logging
import sys

from twisted.internet import reactor

from tunnels.edge.budget import BudgetLimits
from tunnelsite.connections import ConnectionLimits
from tunnelsite.server import LuminetServer

from .app import App

SERVERS = {"luminet": LuminetServer, "stock": daphne.server.Server}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--http-timeout", type=int, default=None)
    parser.add_argument("--head-timeout", type=float, default=ConnectionLimits.head_timeout)
    parser.add_argument("--min-body-rate", type=float, default=ConnectionLimits.min_body_rate)
    parser.add_argument("--body-rate-window", type=float, default=ConnectionLimits.body_rate_window)
    parser.add_argument("--per-address", type=int, default=ConnectionLimits.per_address)
    parser.add_argument("--total", type=int, default=ConnectionLimits.total)
    parser.add_argument("--memory-budget", type=int, default=BudgetLimits.total)
    parser.add_argument("--tunnel-budget", type=int, default=BudgetLimits.per_tunnel)
    args = parser.parse_args()
    limits = ConnectionLimits(
        head_timeout=args.head_timeout,
        min_body_rate=args.min_body_rate,
        body_rate_window=args.body_rate_window,
        per_address=args.per_address,
        total=args.total,
    )
    budget = BudgetLimits(total=args.memory_budget, per_tunnel=args.tunnel_budget)
    options = {"limits": limits, "budget": budget} if args.kind == "luminet" else {}
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    app = App()
    server = SERVERS[args.kind](
        application=app,
        endpoints=["tcp:port=0:interface=127.0.0.1"],
        http_timeout=args.http_timeout,
        ready_callable=lambda: reactor.callWhenRunning(announce),
        server_name="",
        **options,
    )
    app.server = server

    def announce() -> None:
        for host, port in server.listening_addresses:
            print(f"LISTENING {host}:{port}", flush=True)

    server.run()


if __name__ == "__main__":
    main()
