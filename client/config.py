"""Client settings: flags first, then TUNNEL_* variables, then ~/.tunnel/config.

The config file is JSON; every key is optional::

    {"server": "https://tunnel.example.com", "token": "lmn_…",
     "allow_cidr": ["203.0.113.0/24"],
     "tunnels": {"web": {"port": 5173, "host_header": "rewrite"},
                 "api": {"port": 8000, "subdomain": "my-api",
                         "basic_auth": ["ann:correct horse"]},
                 "hooks": {"port": 4000, "verify_webhook": ["github:SECRET"]}}}

``tunnels`` names the tunnels ``start web api`` (or ``start --all``) opens at once.
The rules at the edge (``client.rules``: ``basic_auth``, ``allow_cidr``,
``deny_cidr``) may stand at the top level, for every tunnel, or in a tunnel; a
tunnel's own key, and then a flag, replaces that kind of rule.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .events import COMMAND_LINE
from .local import PRESERVE, host_header_problem
from .names import NAMES_PATH
from .protocol import MAX_CONNECTIONS, ProtocolError, subdomain_problem, validate_webhooks
from .rules import CONFIG_KEYS, NO_RULES, EdgeRules, RulesError, rules_from_config

DEFAULT_SERVER = "ws://localhost:8000/tunnel"
DEFAULT_HOST = "localhost"
DEFAULT_CONCURRENCY = 64
#: Tunnel WebSockets per tunnel: two, so losing one (a server process restarting)
#: leaves the tunnel up on the other while it is dialled again.
DEFAULT_CONNECTIONS = 2
CONFIG_PATH = Path("~/.tunnel/config")
#: Seconds between a tunnel's tries at spreading connections that share one server
#: process (``client.keeper``; ``TUNNEL_REBALANCE_SECONDS``), doubled while none works.
DEFAULT_REBALANCE_SECONDS = 30.0


class ConfigError(Exception):
    """The settings are missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Target:
    """What one tunnel forwards to, and the subdomain it asks for."""

    port: int
    host: str | None = None
    subdomain: str | None = None
    host_header: str = PRESERVE
    #: The tunnel's name in the agent API and the console (``client.events.COMMAND_LINE``).
    name: str = COMMAND_LINE
    #: ``--verify-webhook`` rules (``client.webhooks``); out of ``repr``: they hold secrets.
    webhooks: tuple[str, ...] = field(default=(), repr=False)
    #: Its rules at the edge, from its config entry (``client.rules``).
    rules: EdgeRules = NO_RULES


@dataclass(frozen=True)
class Config:
    """One tunnel's settings: the server and token it shares with the others, and its own."""

    server: str
    token: str = field(repr=False)
    local_host: str = DEFAULT_HOST
    local_port: int = 3000
    max_concurrency: int = DEFAULT_CONCURRENCY
    #: Tunnel WebSockets kept open, each able to serve every request (``--connections``).
    connections: int = DEFAULT_CONNECTIONS
    #: Share the required subdomain with other clients of the token (``--pool``).
    pool: bool = False
    #: Seconds before connections sharing a server process try to spread again.
    rebalance_seconds: float = DEFAULT_REBALANCE_SECONDS
    #: The subdomain required (``--subdomain``); without, the remembered one is asked for.
    subdomain: str | None = None
    names_path: Path = NAMES_PATH
    #: What the local server sees as ``Host``: preserve, rewrite, or a value (client.local).
    host_header: str = PRESERVE
    name: str = COMMAND_LINE
    #: ``--verify-webhook`` rules, sent in ``auth``; out of ``repr``: they hold secrets.
    webhooks: tuple[str, ...] = field(default=(), repr=False)
    #: Who may call the tunnel: checked by the server at the edge (``client.rules``).
    rules: EdgeRules = NO_RULES

    @property
    def local_origin(self) -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"http://{host}:{self.local_port}"


def server_url(value: str) -> str:
    """Turn what a user types (``https://tunnel.example.com``) into the tunnel WebSocket URL."""
    value = value.strip()
    if "://" not in value:
        raise ConfigError(
            f"server must be a URL with its scheme, not {value!r}: "
            f"https://{value} (or http:// for a server without TLS)"
        )
    parts = urlsplit(value)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ConfigError(f"server must be an http(s) or ws(s) URL, not {value!r}")
    if parts.username or parts.password:
        raise ConfigError("the server URL must not contain credentials; use --token")
    if parts.query or parts.fragment:
        raise ConfigError("the server URL must not contain a query; use --token for the token")
    path = parts.path.rstrip("/") or "/tunnel"  # …/tunnel/ is …/tunnel
    return urlunsplit((scheme, parts.netloc, path, "", ""))


#: What a tunnel of the config file may say, and the type each must have.
_TUNNEL_KEYS: dict[str, type] = {"port": int, "host": str, "subdomain": str, "host_header": str}
#: A tunnel's webhook rules in the config file: a list, as ``--verify-webhook`` repeated.
WEBHOOK_KEY = "verify_webhook"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class StoredConfig:
    """What ~/.tunnel/config says."""

    server: str | None = None
    token: str | None = None
    tunnels: dict[str, Target] = field(default_factory=dict)
    #: The rules at the top level: every tunnel's, unless it sets its own.
    rules: EdgeRules = NO_RULES


def read_config_file(path: Path) -> StoredConfig:
    """Read ~/.tunnel/config; missing is fine, anything unexpected in it is an error."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        return StoredConfig()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    top_keys = {"server", "token", "tunnels", *CONFIG_KEYS}
    unknown = sorted(set(data) - top_keys)
    if unknown:
        known = ", ".join(sorted(top_keys))
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (known: {known})")
    for key in ("server", "token"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{key!r} in {path} must be a string")
    tunnels = data.get("tunnels", {})
    if not isinstance(tunnels, dict):
        raise ConfigError(f"'tunnels' in {path} must be an object of named tunnels")
    try:
        rules = rules_from_config(str(path), data)
    except RulesError as exc:
        raise ConfigError(str(exc)) from None
    return StoredConfig(
        server=data.get("server"),
        token=data.get("token"),
        tunnels={name: _stored_tunnel(path, name, spec) for name, spec in tunnels.items()},
        rules=rules,
    )


def _stored_tunnel(path: Path, name: str, spec: Any) -> Target:
    where = f"{path}: tunnel {name!r}"
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: a tunnel name is letters, digits, '-', '_' and '.', up to 64")
    if not isinstance(spec, dict):
        raise ConfigError(f'{where} must be an object, e.g. {{"port": 3000}}')
    webhooks = spec.get(WEBHOOK_KEY, [])
    if not (isinstance(webhooks, list) and all(isinstance(rule, str) for rule in webhooks)):
        raise ConfigError(f'{where}: {WEBHOOK_KEY!r} must be a list, e.g. ["github:SECRET"]')
    for key, value in spec.items():
        if key == WEBHOOK_KEY or key in CONFIG_KEYS:
            continue  # checked on their own
        if key not in _TUNNEL_KEYS:
            known = ", ".join([*_TUNNEL_KEYS, WEBHOOK_KEY, *CONFIG_KEYS])
            raise ConfigError(f"{where}: unknown key {key!r} (known: {known})")
        kind = _TUNNEL_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key!r} must be a {'number' if kind is int else 'string'}")
    if "port" not in spec:
        raise ConfigError(f'{where} needs a "port"')
    try:
        rules = rules_from_config(where, spec)
    except RulesError as exc:
        raise ConfigError(str(exc)) from None
    return Target(
        port=spec["port"],
        host=spec.get("host"),
        subdomain=spec.get("subdomain"),
        host_header=spec.get("host_header", PRESERVE),
        name=name,
        webhooks=tuple(webhooks),
        rules=rules,
    )


def targets_from_ports(ports: Sequence[int], target: Target) -> list[Target]:
    """The tunnels of ``--port`` given once (``command_line``) or more (``http-PORT``)."""
    if len(ports) == 1:
        return [replace(target, port=ports[0], name=COMMAND_LINE)]
    if target.subdomain is not None:
        raise ConfigError(
            "--subdomain names one tunnel; for several, name them in ~/.tunnel/config "
            "(README: several tunnels)"
        )
    return [
        Target(
            port,
            target.host,
            None,
            target.host_header,
            f"http-{port}",
            target.webhooks,
            target.rules,
        )
        for port in ports
    ]


def stored_targets(names: Sequence[str], config_path: Path = CONFIG_PATH) -> list[Target]:
    """The tunnels called ``names`` in the config file; all of them if ``names`` is empty."""
    stored = read_config_file(config_path).tunnels
    if not stored:
        raise ConfigError(
            f"{config_path} names no tunnels: add "
            '"tunnels": {"web": {"port": 3000}} (README: several tunnels)'
        )
    missing = [name for name in names if name not in stored]
    if missing:
        raise ConfigError(
            f"no tunnel {missing[0]!r} in {config_path} (it has: {', '.join(sorted(stored))})"
        )
    return [stored[name] for name in names] if names else list(stored.values())


def resolve_all(
    targets: Sequence[Target],
    *,
    server: str | None,
    token: str | None,
    max_concurrency: int,
    environ: Mapping[str, str],
    config_path: Path = CONFIG_PATH,
    rules: EdgeRules = NO_RULES,
    connections: int = DEFAULT_CONNECTIONS,
    pool: bool = False,
) -> list[Config]:
    """One Config per target, sharing the server and token; checked together.

    ``rules`` (the flags) replace, kind by kind, a target's own rules, which
    replace the config file's top-level ones.
    """
    stored = read_config_file(config_path)
    chosen_server = server or environ.get("TUNNEL_SERVER") or stored.server or DEFAULT_SERVER
    chosen_token = token or environ.get("TUNNEL_TOKEN") or stored.token
    if not chosen_token:
        raise ConfigError("no token: pass --token, set TUNNEL_TOKEN, or put it in ~/.tunnel/config")
    if not 1 <= max_concurrency <= 1024:
        raise ConfigError("--max-concurrency must be between 1 and 1024")
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise ConfigError(f"--connections must be between 1 and {MAX_CONNECTIONS}")
    if pool and any(target.subdomain is None for target in targets):
        raise ConfigError("--pool shares a subdomain with other clients: name it with --subdomain")
    url = server_url(chosen_server)
    rebalance = _seconds(environ, "TUNNEL_REBALANCE_SECONDS", DEFAULT_REBALANCE_SECONDS)
    try:
        rules.check()
    except RulesError as exc:
        raise ConfigError(str(exc)) from None
    configs = [
        replace(
            _tunnel_config(
                replace(target, rules=rules.over(target.rules.over(stored.rules))),
                url,
                chosen_token.strip(),
                max_concurrency,
            ),
            connections=connections,
            pool=pool,
            rebalance_seconds=rebalance,
        )
        for target in targets
    ]
    _check_distinct(configs)
    return configs


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds (at most a day) from ``environ``, else ``default``."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:  # NaN fails too
        raise ConfigError(
            f"{name} must be a number of seconds above 0 (at most 86400), not {text!r}"
        )
    return value


def _tunnel_config(target: Target, server: str, token: str, max_concurrency: int) -> Config:
    label = "" if target.name == COMMAND_LINE else f"tunnel {target.name!r}: "
    if not 1 <= target.port <= 65535:
        raise ConfigError(f"{label}the local port must be between 1 and 65535, not {target.port}")
    local_host = (target.host or DEFAULT_HOST).strip()
    if not local_host or any(c in local_host for c in "/@?#[] "):
        raise ConfigError(f"{label}--host must be a host name or IP address, not {target.host!r}")
    if target.subdomain is not None and (problem := subdomain_problem(target.subdomain)):
        raise ConfigError(f"{label}--subdomain {target.subdomain!r}: {problem}")
    if problem := host_header_problem(target.host_header):
        raise ConfigError(f"{label}--host-header {target.host_header!r}: {problem}")
    try:
        validate_webhooks(target.webhooks)
    except ProtocolError as exc:  # the message never repeats a secret
        raise ConfigError(f"{label}--verify-webhook: {exc}") from None
    return Config(
        server=server,
        token=token,
        local_host=local_host,
        local_port=target.port,
        max_concurrency=max_concurrency,
        subdomain=target.subdomain,
        host_header=target.host_header,
        name=target.name,
        webhooks=target.webhooks,
        rules=target.rules,
    )


def _check_distinct(configs: list[Config]) -> None:
    """Refuse tunnels that would ask for the same name: one subdomain each."""
    asked: dict[str, str] = {}
    for config in configs:
        # Without --subdomain a tunnel asks for its local address's remembered name.
        key = config.subdomain or config.local_origin
        if key in asked:
            what = config.subdomain or f"a subdomain for {config.local_origin}"
            raise ConfigError(
                f"tunnels {asked[key]!r} and {config.name!r} both ask for {what}; "
                "give each its own subdomain"
            )
        asked[key] = config.name


def resolve(
    *,
    port: int,
    host: str | None,
    server: str | None,
    token: str | None,
    max_concurrency: int,
    environ: Mapping[str, str],
    config_path: Path = CONFIG_PATH,
    subdomain: str | None = None,
    host_header: str = PRESERVE,
) -> Config:
    """One tunnel's settings: the sources combined in priority order and checked."""
    (config,) = resolve_all(
        [Target(port, host, subdomain, host_header)],
        server=server,
        token=token,
        max_concurrency=max_concurrency,
        environ=environ,
        config_path=config_path,
    )
    return config


def environment() -> Mapping[str, str]:
    return os.environ
