"""Keeping one tunnel up: dial, authenticate, serve, and again after a drop, until stopped.

``TunnelKeeper.run`` is the client's life for one tunnel (the CLI runs it on the
main thread, ``client.api`` on a thread of its own): it opens the WebSocket
(``client.dial``), authenticates with the subdomain it wants, serves streams
(``client.session.Tunnel``) until the connection is lost, and reconnects with
backoff. A fatal refusal (token, subdomain, wrong server) ends it with a
``TunnelError``; ``stop()`` ends it from any thread, closing the tunnel so the
server keeps the subdomain for this token for the grace period.
"""

from __future__ import annotations

import random
import threading

import websocket

from . import protocol
from .config import Config
from .dial import dial
from .errors import AuthFailed, ConnectionLost, NameRefused, TunnelError
from .events import Events
from .local import LocalAddress, describe
from .names import RememberedNames
from .protocol import AuthRefusal, ProtocolError
from .session import PING_TIMEOUT, Tunnel, close_socket

CONNECT_TIMEOUT = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
#: Seconds the start-up check of the local address waits for a connection.
LOCAL_CHECK_TIMEOUT = 2.0


class TunnelKeeper:
    """One tunnel, kept up. ``run()`` blocks; ``stop()`` may come from any thread.

    The subdomain asked for is ``--subdomain`` (required), else the one this
    server gave this local address last time (``client.names``); after a drop,
    the one just held.
    """

    def __init__(self, config: Config, events: Events, max_attempts: int | None = None) -> None:
        self.config = config
        self._events = events
        self._max_attempts = max_attempts
        self._names = RememberedNames(config.names_path)
        self._local = LocalAddress(config.local_host, config.local_port, config.host_header)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._tunnel: Tunnel | None = None
        #: The public URL while the tunnel is up; None before and between connections.
        self.public_url: str | None = None
        #: Set whenever the tunnel is up.
        self.active = threading.Event()

    def run(self) -> None:
        """Keep the tunnel up until stopped; raise TunnelError if it cannot be."""
        config, events = self.config, self._events
        subdomain = config.subdomain or self._names.get(config.server, config.local_origin)
        required = config.subdomain is not None
        held = False  # whether a connection of ours had ``subdomain``: then we resume it
        failures = 0
        while not self._stopping.is_set():
            if self._max_attempts is not None and failures >= self._max_attempts:
                raise TunnelError("gave up reconnecting")
            try:
                ws = dial(config.server, CONNECT_TIMEOUT)
            except ConnectionLost as exc:
                reason = str(exc)
            else:
                try:
                    ok = authenticate(ws, config.token, subdomain, required, resume=held)
                    ws.settimeout(PING_TIMEOUT)
                    if subdomain is not None and ok.subdomain != subdomain:
                        events.subdomain_changed(subdomain, ok.subdomain)
                    subdomain, held = ok.subdomain, True
                    self._names.put(config.server, config.local_origin, subdomain)
                    failures = 0
                    self._serve(ws, ok)
                    reason = "connection lost"
                except ConnectionLost as exc:
                    reason = str(exc) or "connection lost"
                except (OSError, websocket.WebSocketException) as exc:
                    reason = str(exc) or exc.__class__.__name__
                finally:
                    self.active.clear()
                    self.public_url = None
                    close_socket(ws)
            if self._stopping.is_set():
                return
            failures += 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
            delay *= random.uniform(0.5, 1.5)
            if held:
                events.tunnel_down(reason, delay)
            else:
                events.connect_failed(reason, delay)
            self._stopping.wait(delay)

    def _serve(self, ws: websocket.WebSocket, ok: protocol.AuthOk) -> None:
        tunnel = Tunnel(ws, self.config, self._events, self._local)
        with self._lock:
            if self._stopping.is_set():
                return
            self._tunnel = tunnel
        try:
            self.public_url = ok.url
            self.active.set()
            self._events.tunnel_active(ok.url, ok.subdomain, self.config.local_origin)
            check_local(self._local, self.config.local_origin, self._events)
            tunnel.run()
        finally:
            with self._lock:
                self._tunnel = None

    def stop(self) -> None:
        """End ``run()``: close the tunnel (the server then holds the subdomain for us)."""
        with self._lock:
            self._stopping.set()
            tunnel = self._tunnel
        if tunnel is not None:
            tunnel.close()


#: Refusals of a subdomain asked for, and what to say the user can do.
_NAME_ADVICE = {
    AuthRefusal.SUBDOMAIN_TAKEN: "choose another name with --subdomain",
    AuthRefusal.SUBDOMAIN_INVALID: "choose another name with --subdomain",
    AuthRefusal.SUBDOMAIN_BLOCKED: "choose another name with --subdomain",
    AuthRefusal.SUBDOMAIN_RESERVED: "use the token it is reserved for, or choose another name",
}


def authenticate(
    ws: websocket.WebSocket,
    token: str,
    subdomain: str | None,
    required: bool = False,
    resume: bool = False,
) -> protocol.AuthOk:
    auth = protocol.Auth(token=token, subdomain=subdomain, required=required, resume=resume)
    ws.send(protocol.encode(auth))
    try:
        reply = protocol.decode_from_server(ws.recv())
    except ProtocolError as exc:
        raise ConnectionLost(f"server sent an invalid reply: {exc}") from exc
    match reply:
        case protocol.AuthOk():
            return reply
        case protocol.AuthError(message=text, retry=True):
            raise ConnectionLost(f"the server cannot take tunnels now: {text}")
        case protocol.AuthError(message=text, code=code) if code in _NAME_ADVICE:
            raise NameRefused(f"subdomain refused: {text}; {_NAME_ADVICE[AuthRefusal(code)]}")
        case protocol.AuthError(message=text):
            raise AuthFailed(text)
        case _:
            raise ConnectionLost(f"server sent {type(reply).__name__} instead of auth_ok")


def check_local(local: LocalAddress, origin: str, events: Events) -> None:
    """Warn, without delaying the tunnel, if nothing answers at the local address."""

    def probe() -> None:
        try:
            local.connect(LOCAL_CHECK_TIMEOUT).close()
        except OSError as exc:
            events.local_unreachable(origin, describe(exc, local.authority))

    threading.Thread(target=probe, name="local-check", daemon=True).start()
