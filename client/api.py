"""Tunnels from Python, in-process: for tests and scripts.

    import client

    with client.tunnel(port=8000) as tunnel:
        print(tunnel.public_url)   # https://x7f2k.tunnel.example.com

The server and token come from the arguments, else ``TUNNEL_SERVER`` and
``TUNNEL_TOKEN``, else ``~/.tunnel/config``, as for the command line. The tunnel
runs on a thread of its own; leaving the ``with`` block (or ``close()``) ends it.
``client.pytest_plugin`` wraps this in a fixture.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from types import TracebackType

from .config import DEFAULT_CONCURRENCY, resolve
from .errors import TunnelError
from .events import Events, Observer
from .keeper import TunnelKeeper

#: Seconds ``tunnel`` waits for the tunnel to come up.
START_TIMEOUT = 15.0
#: Seconds between looks at a tunnel that is coming up.
_POLL = 0.05


class OpenTunnel:
    """A tunnel kept up on a background thread until :meth:`close`."""

    def __init__(self, keeper: TunnelKeeper, timeout: float) -> None:
        self._keeper = keeper
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="luminet-tunnel", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not keeper.active.wait(_POLL):
            if not self._thread.is_alive():
                raise self._failure or TunnelError("the tunnel ended before it came up")
            if time.monotonic() > deadline:
                self.close()
                raise TunnelError(f"the tunnel did not come up within {timeout:g} s")
        self.public_url: str = keeper.public_url or ""
        self.subdomain = self.public_url.split("//", 1)[-1].split(".", 1)[0]

    def _run(self) -> None:
        try:
            self._keeper.run()
        except BaseException as exc:  # handed to the caller's thread
            self._failure = exc

    @property
    def local_origin(self) -> str:
        return self._keeper.config.local_origin

    def close(self, timeout: float = 10.0) -> None:
        """End the tunnel and wait for its thread; the subdomain stays ours for the grace."""
        self._keeper.stop()
        self._thread.join(timeout)

    def __enter__(self) -> OpenTunnel:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def tunnel(
    port: int,
    *,
    host: str | None = None,
    server: str | None = None,
    token: str | None = None,
    subdomain: str | None = None,
    host_header: str = "preserve",
    observers: Iterable[Observer] = (),
    timeout: float = START_TIMEOUT,
) -> OpenTunnel:
    """Open a tunnel to ``host``:``port`` and return once its public URL is live.

    Raises ``ConfigError`` for settings that cannot work and ``TunnelError`` (its
    subclasses ``AuthFailed``, ``NameRefused``, ``WrongServer``) when the server
    refuses or the tunnel does not come up within ``timeout`` seconds.
    """
    config = resolve(
        port=port,
        host=host,
        server=server,
        token=token,
        max_concurrency=DEFAULT_CONCURRENCY,
        environ=os.environ,
        subdomain=subdomain,
        host_header=host_header,
    )
    return OpenTunnel(TunnelKeeper(config, Events(list(observers))), timeout)
