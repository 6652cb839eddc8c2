"""``manage.py serve``: run the Luminet server (daphne, fixed, on tunnelsite.asgi)."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

from daphne.cli import CommandLineInterface
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from prometheus_client import start_http_server

from client.protocol import MAX_WS_MESSAGE
from tokens import crypto
from tokens.management.commands.dev_token import client_command
from tunnels import metrics
from tunnels.edge.budget import BudgetLimits
from tunnelsite.banner import Banner
from tunnelsite.connections import ConnectionLimits
from tunnelsite.server import LuminetServer

logger = logging.getLogger(__name__)


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
        parser.add_argument(
            "--dev-token",
            type=Path,
            metavar="FILE",
            help="the development token's file (`make serve`): the banner shows the client "
            "command with it",
        )

    def handle(
        self,
        *args,
        bind: str,
        port: int,
        proxy_headers: bool,
        access_log: bool,
        dev_token: Path | None,
        **options,
    ):
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
        if settings.LUMINET_METRICS_BIND:
            address, metrics_port = settings.LUMINET_METRICS_BIND
            try:
                start_http_server(metrics_port, address, registry=metrics.REGISTRY)
            except OSError as exc:
                raise CommandError(
                    f"LUMINET_METRICS_BIND: cannot listen on {address}:{metrics_port}: {exc}"
                ) from None
            host = f"[{address}]" if ":" in address else address
            logger.info("metrics on http://%s:%d/metrics", host, metrics_port)
        banner = self.banner(dev_token)
        cli = CommandLineInterface()
        cli.server_class = functools.partial(
            LuminetServer,
            limits=limits,
            budget=budget,
            stats_interval=settings.LUMINET_STATS_INTERVAL,
            on_listening=lambda addresses: self.print_banner(banner, addresses),
        )
        cli.run([*daphne_args, "tunnelsite.asgi:application"])

    def banner(self, dev_token: Path | None) -> Banner:
        """Everything the banner says, found before the server starts: the database is
        not for the event loop's thread."""
        command = None
        if dev_token is not None:
            try:
                plaintext = dev_token.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CommandError(f"--dev-token: cannot read {dev_token}: {exc}") from None
            if not crypto.looks_like_token(plaintext):
                raise CommandError(f"--dev-token: {dev_token} holds no token")
            command = client_command(plaintext, settings.LUMINET_PUBLIC_URL)
        return Banner(
            public_url=settings.LUMINET_PUBLIC_URL,
            admin_url=settings.LUMINET_ADMIN_URL,
            has_admin_user=get_user_model().objects.filter(is_superuser=True).exists(),
            client_command=command,
        )

    def print_banner(self, banner: Banner, addresses: list[tuple[str, int]]) -> None:
        sys.stdout.write(banner.text(addresses))
        sys.stdout.flush()
