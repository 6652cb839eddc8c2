"""``python -m client``: expose a local HTTP server through a Luminet server.

The port comes in either of two forms, the same run: ``luminet http 3000`` (the
command form of the original design, and ngrok's) or ``--port 3000``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import DEFAULT_CONCURRENCY, Config, ConfigError, environment, resolve
from .console import ConsoleLog, JsonLog
from .errors import AuthFailed, NameRefused, TunnelError, WrongServer
from .events import Events
from .inspector.app import Inspector
from .inspector.server import InspectorUnavailable
from .inspector.settings import (
    DEFAULT_ENTRIES,
    DEFAULT_MEGABYTES,
    DEFAULT_PORT,
    inspector_settings,
)
from .keeper import TunnelKeeper
from .local import LocalAddress

#: What ``--log-format`` picks: the observer that writes stdout.
LOG_FORMATS: dict[str, type[ConsoleLog | JsonLog]] = {"text": ConsoleLog, "json": JsonLog}


#: The command of ``luminet http PORT``: the one kind of tunnel there is.
HTTP_COMMAND = "http"


def program_name(argv0: str) -> str:
    """How we were started, for usage lines: ``luminet``, ``luminet.pyz``, ``python -m client``."""
    name = os.path.basename(argv0)
    return "python -m client" if name in {"", "__main__.py"} else name


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    prog = prog or program_name(sys.argv[0])
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} http PORT [options]\n       {prog} --port PORT [options]",
        description="Expose a local HTTP server at a public URL through a Luminet server.",
    )
    parser.add_argument("command", nargs="?", metavar="http", help="forward HTTP (and WebSockets)")
    parser.add_argument("target", nargs="?", metavar="PORT", help="local port to forward to")
    parser.add_argument("--port", type=int, help="local port to forward to (as `http PORT`)")
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
    inspect = parser.add_argument_group("inspector and agent API (http://127.0.0.1:4040)")
    inspect.add_argument(
        "--inspect-port",
        type=int,
        default=DEFAULT_PORT,
        help=f"first port tried on 127.0.0.1, then the next ones (default: {DEFAULT_PORT}; "
        "0: any free port)",
    )
    inspect.add_argument("--no-inspect", action="store_true", help="no inspector, no agent API")
    inspect.add_argument(
        "--inspect-entries",
        type=int,
        default=DEFAULT_ENTRIES,
        help=f"exchanges and WebSockets kept (default: {DEFAULT_ENTRIES})",
    )
    inspect.add_argument(
        "--inspect-mb",
        type=float,
        default=DEFAULT_MEGABYTES,
        help=f"MiB of headers, bodies and messages kept (default: {DEFAULT_MEGABYTES})",
    )
    return parser


def local_port(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The port of ``http PORT`` or of ``--port PORT``; exits through ``parser.error``
    (status 2) unless exactly one form gives it."""
    example = f"`{parser.prog} http 3000` or `{parser.prog} --port 3000`"
    if args.command is None:
        if args.port is None:
            parser.error(f"which local port? e.g. {example}")
        return int(args.port)
    if args.command != HTTP_COMMAND:
        if args.command.isdigit():
            parser.error(f"a port goes after the command: `{parser.prog} http {args.command}`")
        parser.error(f"unknown command {args.command!r}: the command is `http PORT`")
    if args.target is None:
        parser.error(f"`http` needs the local port: {example}")
    if args.port is not None:
        parser.error(f"the port is given twice (`http {args.target}` and --port); give one")
    if not args.target.isdigit():
        parser.error(
            f"`http` takes a port number, not {args.target!r}; another local host goes in --host"
        )
    return int(args.target)


def parse_command_line(
    argv: list[str] | None = None, prog: str | None = None
) -> argparse.Namespace:
    """Parse the flags; ``port`` holds the local port, whichever form gave it."""
    parser = build_parser(prog)
    # Intermixed: `http 3000` may come before, between or after the flags.
    args = parser.parse_intermixed_args(argv)
    args.port = local_port(parser, args)
    return args


def observed(args: argparse.Namespace, config: Config) -> tuple[Events, Inspector | None]:
    """The tunnel's observers: the log, and the inspector unless ``--no-inspect``, started."""
    log = LOG_FORMATS[args.log_format](sys.stdout)
    settings = inspector_settings(
        enabled=not args.no_inspect,
        port=args.inspect_port,
        max_entries=args.inspect_entries,
        megabytes=args.inspect_mb,
    )
    if not settings.enabled:
        return Events([log]), None
    local = LocalAddress(config.local_host, config.local_port, config.host_header)
    inspector = Inspector(settings, local)
    # The inspector first: once the log has a line, the inspector has what it says.
    events = Events([inspector.capture, log])
    try:
        log.inspector(inspector.start(events))
    except InspectorUnavailable as exc:
        log.inspector(None, str(exc))
        return Events([log]), None  # nothing to tap for
    return events, inspector


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(argv)
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
        events, inspector = observed(args, config)
        try:
            TunnelKeeper(config, events).run()
        finally:
            if inspector is not None:
                inspector.close()
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
