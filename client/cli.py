"""``python -m client``: expose local HTTP servers through a Luminet server.

The port comes in either of two forms, the same run: ``luminet http 3000`` (the
command form of the original design, and ngrok's) or ``--port 3000``; ``--port``
given again opens another tunnel. ``start web api`` (or ``start --all``) opens
the tunnels named in ~/.tunnel/config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import (
    CONFIG_PATH,
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECTIONS,
    Config,
    ConfigError,
    Target,
    environment,
    resolve_all,
    stored_targets,
    targets_from_ports,
)
from .console import ConsoleLog, JsonLog
from .errors import AuthFailed, NameRefused, TunnelError, WrongServer
from .events import Events
from .group import TunnelGroup
from .inspector.app import Inspector
from .inspector.server import InspectorUnavailable
from .inspector.settings import (
    DEFAULT_ENTRIES,
    DEFAULT_MEGABYTES,
    DEFAULT_PORT,
    inspector_settings,
)
from .local import PRESERVE, LocalAddress
from .protocol import MAX_CONNECTIONS
from .rules import EdgeRules

#: What ``--log-format`` picks: the observer that writes stdout.
LOG_FORMATS: dict[str, type[ConsoleLog | JsonLog]] = {"text": ConsoleLog, "json": JsonLog}


#: The command of ``luminet http PORT``: the one kind of tunnel there is.
HTTP_COMMAND = "http"
#: The command of ``luminet start NAME...``: the tunnels named in the config file.
START_COMMAND = "start"


def program_name(argv0: str) -> str:
    """How we were started, for usage lines: ``luminet``, ``luminet.pyz``, ``python -m client``."""
    name = os.path.basename(argv0)
    return "python -m client" if name in {"", "__main__.py"} else name


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    prog = prog or program_name(sys.argv[0])
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} http PORT [options]\n       {prog} --port PORT [--port PORT ...] [options]"
        f"\n       {prog} start NAME [NAME ...] | --all [options]",
        description="Expose local HTTP servers at public URLs through a Luminet server.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        metavar="http|start",
        help="http PORT: forward HTTP (and WebSockets) to PORT; "
        "start NAME...: the tunnels of those names in ~/.tunnel/config",
    )
    parser.add_argument("targets", nargs="*", metavar="PORT|NAME", help=argparse.SUPPRESS)
    parser.add_argument(
        "--port",
        type=int,
        action="append",
        help="local port to forward to (as `http PORT`); again for another tunnel",
    )
    parser.add_argument(
        "--all", action="store_true", help="with `start`: every tunnel in ~/.tunnel/config"
    )
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
        help="the Host the local server sees: the public one (preserve, the default), "
        "the local address (rewrite: what Vite, webpack, Django and Rails accept) or VALUE",
    )
    protect = parser.add_argument_group(
        "rules at the edge (checked by the server; nothing refused reaches your machine)"
    )
    protect.add_argument(
        "--basic-auth",
        action="append",
        metavar="USER:PASSWORD",
        help="callers must log in as USER with PASSWORD (8+ characters); again for more "
        "users. The local server never sees the Authorization header",
    )
    protect.add_argument(
        "--allow-cidr",
        action="append",
        metavar="NET",
        help="only callers from NET (e.g. 203.0.113.0/24, 2001:db8::/32, or an address); "
        "again for more",
    )
    protect.add_argument(
        "--deny-cidr",
        action="append",
        metavar="NET",
        help="refuse callers from NET, even if allowed; again for more",
    )
    parser.add_argument(
        "--verify-webhook",
        metavar="PROVIDER:SECRET",
        action="append",
        default=[],
        help="let only requests signed by this provider through, checked by the server "
        "before they reach you: github:SECRET, stripe:[SECONDS:]SECRET, "
        "slack:[SECONDS:]SECRET or hmac:[HEADER:]SECRET (HMAC-SHA256 in HEADER, default "
        "X-Signature: hex, sha256=hex or base64); repeat to accept any of several",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        metavar="N",
        help=f"tunnel connections to keep open, spread over the server's processes; "
        f"losing one leaves the tunnel up on the others (default: {DEFAULT_CONNECTIONS}, "
        f"at most {MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--pool",
        action="store_true",
        help="share --subdomain with other clients of the same token that pass --pool: "
        "requests are spread over all of them",
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


def local_ports(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """The ports of ``http PORT`` or of ``--port PORT`` (maybe repeated); exits through
    ``parser.error`` (status 2) unless exactly one form gives them."""
    example = f"`{parser.prog} http 3000` or `{parser.prog} --port 3000`"
    if args.command is None:
        if not args.port:
            parser.error(f"which local port? e.g. {example}")
        return list(args.port)
    if args.command != HTTP_COMMAND:
        if args.command.isdigit():
            parser.error(f"a port goes after the command: `{parser.prog} http {args.command}`")
        parser.error(f"unknown command {args.command!r}: the commands are `http PORT` and `start`")
    if not args.targets:
        parser.error(f"`http` needs the local port: {example}")
    if args.port:
        parser.error(f"the port is given twice (`http {args.targets[0]}` and --port); give one")
    if len(args.targets) > 1:
        parser.error("`http` takes one port; for more, repeat --port or use `start`")
    if not args.targets[0].isdigit():
        parser.error(
            f"`http` takes a port number, not {args.targets[0]!r}; "
            "another local host goes in --host"
        )
    return [int(args.targets[0])]


def stored_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The names of ``start NAME...``; empty for ``start --all``."""
    flags = (
        ("--port", args.port),
        ("--subdomain", args.subdomain),
        ("--verify-webhook", args.verify_webhook),
    )
    for flag, value in flags:
        if value:
            parser.error(f"`start` takes its tunnels from {CONFIG_PATH}; {flag} goes in there")
    if args.host is not None or args.host_header is not None:
        parser.error(
            f"`start` takes its tunnels from {CONFIG_PATH}; set host and host_header there"
        )
    if args.all and args.targets:
        parser.error("give `start` tunnel names or --all, not both")
    if not args.all and not args.targets:
        parser.error(f"which tunnels? `{parser.prog} start web api`, or --all")
    return list(args.targets)


def parse_command_line(
    argv: list[str] | None = None, prog: str | None = None
) -> argparse.Namespace:
    """Parse the flags; ``ports`` holds the local ports whichever form gave them, or
    ``names`` the config file's tunnels ``start`` asks for (empty: all)."""
    parser = build_parser(prog)
    # Intermixed: `http 3000` may come before, between or after the flags.
    args = parser.parse_intermixed_args(argv)
    args.names = None
    args.ports = []
    if args.command == START_COMMAND:
        args.names = stored_names(parser, args)
    else:
        if args.all:
            parser.error("--all goes with `start`")
        args.ports = local_ports(parser, args)
    return args


def tunnel_targets(args: argparse.Namespace) -> list[Target]:
    if args.names is not None:
        return stored_targets(args.names)
    target = Target(
        0,
        args.host,
        args.subdomain,
        args.host_header or PRESERVE,
        webhooks=tuple(args.verify_webhook),
    )
    return targets_from_ports(args.ports, target)


def edge_rules(args: argparse.Namespace) -> EdgeRules:
    """The rules the flags set (checked in ``resolve_all``)."""
    return EdgeRules(
        basic_auth=tuple(args.basic_auth or ()),
        allow_cidr=tuple(args.allow_cidr or ()),
        deny_cidr=tuple(args.deny_cidr or ()),
    )


def observed(args: argparse.Namespace, configs: list[Config]) -> tuple[Events, Inspector | None]:
    """The tunnels' observers: the log, and the inspector unless ``--no-inspect``, started."""
    log = LOG_FORMATS[args.log_format](sys.stdout)
    if len(configs) > 1:
        log.label_tunnels()
    settings = inspector_settings(
        enabled=not args.no_inspect,
        port=args.inspect_port,
        max_entries=args.inspect_entries,
        megabytes=args.inspect_mb,
    )
    if not settings.enabled:
        log.inspector(None, "--no-inspect")
        return Events([log]), None
    locals_ = {
        config.name: LocalAddress(config.local_host, config.local_port, config.host_header)
        for config in configs
    }
    inspector = Inspector(settings, locals_)
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
        configs = resolve_all(
            tunnel_targets(args),
            server=args.server,
            token=args.token,
            max_concurrency=args.max_concurrency,
            environ=environment(),
            rules=edge_rules(args),
            connections=args.connections,
            pool=args.pool,
        )
        events, inspector = observed(args, configs)
        try:
            TunnelGroup(configs, events).run()
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
