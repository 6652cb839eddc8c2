"""Client settings: flags first, then TUNNEL_* variables, then ~/.tunnel/config."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .local import PRESERVE, host_header_problem
from .names import NAMES_PATH
from .protocol import subdomain_problem

DEFAULT_SERVER = "ws://localhost:8000/tunnel"
DEFAULT_HOST = "localhost"
DEFAULT_CONCURRENCY = 64
CONFIG_PATH = Path("~/.tunnel/config")


class ConfigError(Exception):
    """The settings are missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Config:
    server: str
    token: str = field(repr=False)
    local_host: str = DEFAULT_HOST
    local_port: int = 3000
    max_concurrency: int = DEFAULT_CONCURRENCY
    #: The subdomain required (``--subdomain``); without, the remembered one is asked for.
    subdomain: str | None = None
    names_path: Path = NAMES_PATH
    #: What the local server sees as ``Host``: preserve, rewrite, or a value (client.local).
    host_header: str = PRESERVE

    @property
    def local_origin(self) -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"http://{host}:{self.local_port}"


def server_url(value: str) -> str:
    """Turn what a user types (``https://tunnel.example.com``) into the tunnel WebSocket URL."""
    parts = urlsplit(value.strip())
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ConfigError(f"server must be an http(s) or ws(s) URL, not {value!r}")
    if parts.username or parts.password:
        raise ConfigError("the server URL must not contain credentials; use --token")
    if parts.query or parts.fragment:
        raise ConfigError("the server URL must not contain a query; use --token for the token")
    path = parts.path if parts.path not in {"", "/"} else "/tunnel"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def read_config_file(path: Path) -> dict[str, str]:
    """Read ~/.tunnel/config (JSON with ``server`` and ``token``); missing is fine."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    result = {}
    for key in ("server", "token"):
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"{key!r} in {path} must be a string")
            result[key] = data[key]
    return result


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
    """Combine the sources in priority order and check the result."""
    stored = read_config_file(config_path)
    chosen_server = server or environ.get("TUNNEL_SERVER") or stored.get("server") or DEFAULT_SERVER
    chosen_token = token or environ.get("TUNNEL_TOKEN") or stored.get("token")
    if not chosen_token:
        raise ConfigError("no token: pass --token, set TUNNEL_TOKEN, or put it in ~/.tunnel/config")
    if not 1 <= port <= 65535:
        raise ConfigError(f"the local port must be between 1 and 65535, not {port}")
    local_host = (host or DEFAULT_HOST).strip()
    if not local_host or any(c in local_host for c in "/@?#[] "):
        raise ConfigError(f"--host must be a host name or IP address, not {host!r}")
    if not 1 <= max_concurrency <= 1024:
        raise ConfigError("--max-concurrency must be between 1 and 1024")
    if subdomain is not None and (problem := subdomain_problem(subdomain)):
        raise ConfigError(f"--subdomain {subdomain!r}: {problem}")
    if problem := host_header_problem(host_header):
        raise ConfigError(f"--host-header {host_header!r}: {problem}")
    return Config(
        server=server_url(chosen_server),
        token=chosen_token.strip(),
        local_host=local_host,
        local_port=port,
        max_concurrency=max_concurrency,
        subdomain=subdomain,
        host_header=host_header,
    )


def environment() -> Mapping[str, str]:
    return os.environ
