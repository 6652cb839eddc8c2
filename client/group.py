"""Several tunnels from one client: a ``TunnelKeeper`` each, on threads of their own.

``--port`` given more than once, or ``start web api`` with tunnels named in
~/.tunnel/config, opens several tunnels that share the server, the token, the
inspector and the console. They stand or fall together at start-up, as ngrok's
do: a refusal that no retry can mend (a bad token, a subdomain taken) ends
every one of them, so the user never has half of a set running unnoticed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .config import Config
from .events import Events
from .keeper import TunnelKeeper

#: Seconds each tunnel has to say goodbye to the server when the client stops.
STOP_TIMEOUT = 5.0


class TunnelGroup:
    """Keeps ``configs``' tunnels up until ``stop()`` or the first fatal error."""

    def __init__(self, configs: Sequence[Config], events: Events) -> None:
        self.keepers = [TunnelKeeper(config, events.named(config.name)) for config in configs]
        self._ended = threading.Event()
        self._failure: BaseException | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        """Block until stopped; raise the first tunnel's fatal error, after stopping the rest.

        A KeyboardInterrupt stops every tunnel (each closes properly, so the
        server keeps its subdomain for the grace period) and is raised again.
        """
        threads = [
            # Daemons: a tunnel that does not end within STOP_TIMEOUT must not hold
            # the process open after Ctrl+C.
            threading.Thread(
                target=self._keep, args=(keeper,), name=f"tunnel-{keeper.name}", daemon=True
            )
            for keeper in self.keepers
        ]
        for thread in threads:
            thread.start()
        try:
            self._ended.wait()
        finally:
            self.stop()
            for thread in threads:
                thread.join(STOP_TIMEOUT)
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        for keeper in self.keepers:
            keeper.stop()
        self._ended.set()

    def _keep(self, keeper: TunnelKeeper) -> None:
        try:
            keeper.run()
        except BaseException as exc:  # handed to run()'s thread
            with self._lock:
                if self._failure is None:
                    self._failure = exc
        finally:
            # A keeper returns only when stopped; either way the group is over.
            self._ended.set()
