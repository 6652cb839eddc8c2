"""Processes that listen on a port and say which: the ready line, and the port in it.

Every server here binds port 0 (a free port, chosen by the kernel) and prints the
port once it listens; nothing connects before that line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from .process import PYTHON, Process

#: daphne's line once it listens: ``manage.py serve`` and ``bench.hello`` print it.
LISTENING_RE = r"Listening on TCP address 127\.0\.0\.1:(\d+)"
#: The bench upstream's line (``bench/upstream.py``).
UPSTREAM_RE = r"Upstream listening on 127\.0\.0\.1:(\d+)"
#: Seconds for a server to import Django and listen.
SERVER_START_TIMEOUT = 30.0


def serve_argv(port: int = 0) -> list[str]:
    """``manage.py serve`` on 127.0.0.1; port 0 lets the kernel choose."""
    return [PYTHON, "manage.py", "serve", "--bind", "127.0.0.1", "--port", str(port)]


class Server(Process):
    """A process that prints the port it listens on; ``port`` is known after ``wait_ready()``.

    ``ready`` is the pattern of that line, its first group the port.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        ready: str = LISTENING_RE,
        merge: bool = True,
        logdir: Path | None = None,
    ) -> None:
        super().__init__(name, argv, env, merge=merge, logdir=logdir)
        self.ready = ready
        self.port = 0

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT) -> int:
        """Wait for the ready line; return the port it names."""
        _, match = self.stdout.wait_for(self.ready, timeout)
        self.port = int(match[1])
        return self.port

    @property
    def ws_url(self) -> str:
        """Where a tunnel client connects, if this is our server."""
        return f"ws://127.0.0.1:{self.port}/tunnel"
