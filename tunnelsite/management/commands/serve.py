"""``manage.py serve``: run the Luminet server (daphne, fixed, on tunnelsite.asgi)."""

from __future__ import annotations

import functools

from daphne.cli import CommandLineInterface
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from client.protocol import MAX_WS_MESSAGE
from tunnels.edge.budget import BudgetLimits
from tunnelsite.connections import ConnectionLimits
from tunnelsite.server import LuminetServer


class Command(BaseCommand):
    help = "Serve Luminet with daphne. Migrations are not run; use `manage.py migrate` first."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
        parser.add_argument(
            "--access-log",
            action="store_true",
            help="print one line per request on stdout (off by default: it costs "
            "throughput, and a reverse proxy in front usually logs requests already)",
        )
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="trust X-Forwarded-For/-Proto from a reverse proxy in front (e.g. Caddy)",
        )

    def handle(self, *args, bind: str, port: int, proxy_headers: bool, access_log: bool, **options):
        if not 0 <= port <= 65535:
            raise CommandError(f"--port must be between 0 and 65535, not {port}")
        # daphne reads "--port 0" as "no port" and falls back to 8000, so the address
        # goes in as a Twisted endpoint, where port 0 means "pick a free one".
        interface = bind.replace(":", r"\:")
        daphne_args = [
            "--endpoint",
            f"tcp:port={port}:interface={interface}",
            # Only the local server's headers reach the public client: no "Server: daphne".
            "--no-server-name",
            # daphne's verbosity only switches its access log on (our logging is
            # configured in settings).
            "--verbosity",
            "1" if access_log else "0",
            # Public WebSocket messages up to the protocol's limit (daphne: 1 MiB).
            "--websocket-max-message-size",
            str(MAX_WS_MESSAGE),
            "--websocket-max-frame-size",
            str(MAX_WS_MESSAGE),
        ]
        if proxy_headers:
            daphne_args.append("--proxy-headers")
        limits = ConnectionLimits(
            head_timeout=settings.LUMINET_HEADER_TIMEOUT,
            min_body_rate=settings.LUMINET_MIN_BODY_RATE,
            stall_timeout=settings.LUMINET_STALL_TIMEOUT,
            per_address=settings.LUMINET_MAX_CONNECTIONS_PER_ADDRESS,
            total=settings.LUMINET_MAX_CONNECTIONS,
            trusted=settings.LUMINET_TRUSTED_PROXIES,
        )
        budget = BudgetLimits(
            total=settings.LUMINET_MEMORY_BUDGET, per_tunnel=settings.LUMINET_TUNNEL_MEMORY_BUDGET
        )
        cli = CommandLineInterface()
        cli.server_class = functools.partial(
            LuminetServer,
            limits=limits,
            budget=budget,
            stats_interval=settings.LUMINET_STATS_INTERVAL,
        )
        cli.run([*daphne_args, "tunnelsite.asgi:application"])
