"""The inspector put together: store, capture, replayer and server, started and stopped once."""

from __future__ import annotations

from ..events import Events
from ..local import LocalAddress
from .capture import Capture
from .replay import Replayer
from .routes import Page, Routes
from .server import InspectorServer
from .settings import PORT_ATTEMPTS, InspectorSettings
from .store import Store


class Inspector:
    """Make it, put ``capture`` among the tunnel's observers, then ``start`` with their Events.

    Each tunnel's local address, by the tunnel's name, is all it is given of the
    client's settings: the token never reaches the inspector, so no page or API
    answer can show it.
    """

    def __init__(self, settings: InspectorSettings, locals_: dict[str, LocalAddress]) -> None:
        self.settings = settings
        store = Store(settings.max_entries, settings.max_bytes, settings.body_cap)
        self.capture = Capture(store, list(locals_))
        self._locals = locals_
        self._replayer: Replayer | None = None
        self._server: InspectorServer | None = None

    def start(self, events: Events) -> str:
        """Listen (raises InspectorUnavailable if no port is free); return the page's URL."""
        replayer = Replayer(self._locals, events, self.capture.store)
        routes = Routes(self.capture, replayer, Page.load())
        server = InspectorServer(routes.router(), self.settings.port, PORT_ATTEMPTS)
        self._replayer, self._server = replayer, server
        server.start()
        return server.url

    def close(self) -> None:
        """Stop serving, end the pages' event streams and the replays still running."""
        self.capture.store.close()
        if self._server is not None:
            self._server.close()
        if self._replayer is not None:
            self._replayer.close()
