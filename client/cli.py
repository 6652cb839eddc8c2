"""``python -m client``: expose a local HTTP server through a Luminet server."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import DEFAULT_CONCURRENCY, ConfigError, environment, resolve
from .console import ConsoleLog, JsonLog
from .errors import AuthFailed, NameRefused, TunnelError, WrongServer
from .events import Events
from .keeper import TunnelKeeper

#: What ``--log-format`` picks: the observer that writes stdout.
LOG_FORMATS = {"text": ConsoleLog, "json": JsonLog}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m client",
        description="Expose a local HTTP server at a public URL through a Luminet server.",
    )
    parser.add_argument("--port", type=int, required=True, help="local port to forward to")
    parser.add_argument("--host", help="local host to forward to (default: localhost)")
    parser.add_argument(
        "--server",
        help="Luminet server URL, e.g. https://tunnel.example.com "
        "(default: $TUNNEL_SERVER, ~/.tunnel/config, or ws://localhost:8000/tunnel)",
    )
    parser.add_argument("--token", help="access token (default: $TUNNEL_TOKEN or ~/.tunnel/config)")
    parser.add_argument(
        "--subdomain",
        metavar="NAME",
        help="ask for this subdomain, or fail (default: the one this port had last time, "
        "when it is free)",
    )
    parser.add_argument(
        "--host-header",
        metavar="preserve|rewrite|VALUE",
        default="preserve",
        help="the Host the local server sees: the public one (preserve, the default), "
        "the local address (rewrite: what Vite, webpack, Django and Rails accept) or VALUE",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"requests served at once (default: {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--log-format",
        choices=sorted(LOG_FORMATS),
        default="text",
        help="stdout: lines for people (text, the default) or one JSON object per line (json)",
    )
    parser.add_argument("--verbose", action="store_true", help="log protocol details")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace", line_buffering=True)
    try:
        config = resolve(
            port=args.port,
            host=args.host,
            server=args.server,
            token=args.token,
            max_concurrency=args.max_concurrency,
            environ=environment(),
            subdomain=args.subdomain,
            host_header=args.host_header,
        )
        TunnelKeeper(config, Events([LOG_FORMATS[args.log_format](sys.stdout)])).run()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AuthFailed as exc:
        print(f"error: the server refused the tunnel: {exc}", file=sys.stderr)
        print(
            "hint: get a token from the server's operator (manage.py issue_token, or the "
            "admin's Tokens page) and pass it in TUNNEL_TOKEN, ~/.tunnel/config or --token",
            file=sys.stderr,
        )
        return 3
    except NameRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except WrongServer as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TunnelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
