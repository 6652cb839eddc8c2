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
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

import websocket

from . import protocol
from .config import Config
from .dial import dial
from .errors import (
    AuthFailed,
    ConnectionLost,
    NameRefused,
    NodeAvoided,
    TooManyTunnels,
    TunnelError,
    WrongServer,
)
from .events import Events
from .local import LocalAddress, describe
from .names import RememberedNames
from .protocol import AuthRefusal, ProtocolError
from .rules import NO_RULES, EdgeRules
from .session import PING_TIMEOUT, Tunnel, close_socket, ping_payload, round_trip

CONNECT_TIMEOUT = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
#: Seconds the start-up check of the local address waits for a connection.
LOCAL_CHECK_TIMEOUT = 2.0
#: Times a connection dials again when it reaches a server process that another
#: connection of its tunnel is on (``Auth.avoid``), hoping the load balancer in
#: front picks another; after that it takes whichever process it reaches.
MAX_REDIALS = 3
#: Seconds between two tries at spreading a tunnel's connections at most: the wait
#: doubles from ``TUNNEL_REBALANCE_SECONDS`` while every try lands on the
#: process they share (only one process is up, or the proxy in front pins).
REBALANCE_MAX = 600.0


@dataclass(frozen=True)
class Opened:
    """A tunnel connection dialled and authenticated, handed to the slot it is for."""

    ws: websocket.WebSocket
    ok: protocol.AuthOk
    latency: float | None


class TunnelKeeper:
    """One tunnel, kept up on ``config.connections`` WebSockets. ``run()`` blocks;
    ``stop()`` may come from any thread.

    The first connection asks for the subdomain: ``--subdomain`` (required), else
    the one this server gave this local address last time (``client.names``);
    after a drop, the one just held. Once it has one, the other connections open
    (each on a thread of its own) and join the same tunnel with its id; each one
    serves any request the server sends it, and is dialled again when it drops.
    A connection that lands on a server process another one is on dials again (a
    few times), so that the load balancer in front spreads them. The tunnel is up
    while any connection is.
    """

    def __init__(self, config: Config, events: Events, max_attempts: int | None = None) -> None:
        self.config = config
        self.name = config.name
        self._events = events
        self._max_attempts = max_attempts
        self._names = RememberedNames(config.names_path)
        self._local = LocalAddress(config.local_host, config.local_port, config.host_header)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        #: The tunnel's id, the same on each of its connections (protocol.Auth.tunnel).
        self._tunnel_id = secrets.token_urlsafe(12)
        #: The serving connections by slot and generation, and the server process each
        #: is on. A slot's connection told to ``move`` goes on serving while the next
        #: generation's connection, dialled at once, takes its place.
        self._serving: dict[tuple[int, int], tuple[Tunnel, str]] = {}
        self._generation: dict[int, int] = {}
        self._subdomain: str | None = None
        self._others: list[threading.Thread] = []
        #: Set when a connection comes up (and at the end): the spreading starts over.
        self._connection_came_up = threading.Event()
        self._fatal: TunnelError | None = None
        #: The public URL while the tunnel is up; None before and between connections.
        self.public_url: str | None = None
        #: Set whenever the tunnel is up.
        self.active = threading.Event()

    def run(self) -> None:
        """Keep the tunnel up until stopped; raise TunnelError if it cannot be."""
        try:
            self._keep_connection(0, 0)
            # Moved: the slot's next generation serves on another thread; until stopped.
            self._stopping.wait()
        except TunnelError as exc:
            with self._lock:
                self._fatal = self._fatal or exc
        finally:
            self.stop()
            for thread in self._others:
                thread.join()
        if self._fatal is not None:
            raise self._fatal

    def _start_others(self) -> None:
        """Open the tunnel's other connections, once the first has its subdomain."""
        for slot in range(1, self.config.connections):
            self._start(slot, 0)
        if self.config.connections > 1:
            self._spawn(self._keep_spread, "rebalance")

    def _start(self, slot: int, generation: int, opened: Opened | None = None) -> None:
        self._spawn(
            lambda: self._keep_other(slot, generation, opened), f"connection-{slot}.{generation}"
        )

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            self._others.append(thread)
        thread.start()

    def _keep_other(self, slot: int, generation: int, opened: Opened | None) -> None:
        try:
            self._keep_connection(slot, generation, opened)
        except TunnelError as exc:  # fatal for the whole tunnel: run() raises it
            with self._lock:
                self._fatal = self._fatal or exc
            self.stop()

    def _keep_spread(self) -> None:
        """Now and then, move a connection off a server process that another connection
        of the tunnel is on: after a rolling restart they are all on the process that
        stayed up, and requests entering the others would cross through Redis."""
        base = wait = self.config.rebalance_seconds
        while True:
            came_up = self._connection_came_up.wait(wait * random.uniform(0.75, 1.25))
            if self._stopping.is_set():
                return
            if came_up:  # a new situation (a restart, a move): look again in a while
                self._connection_came_up.clear()
                wait = base
                continue
            crowded = self._crowded()
            if crowded is None or self._respread(*crowded):
                wait = base
            else:
                wait = min(REBALANCE_MAX, wait * 2)

    def _crowded(self) -> tuple[int, int] | None:
        """The highest slot (and its generation) whose connection shares its server
        process with another of the tunnel's current connections; None if none does."""
        by_node: dict[str, list[tuple[int, int]]] = {}
        with self._lock:
            for (slot, generation), (_, node) in self._serving.items():
                if node and self._generation.get(slot, 0) == generation:
                    by_node.setdefault(node, []).append((slot, generation))
        shared = [max(keys) for keys in by_node.values() if len(keys) > 1]
        return max(shared) if shared else None

    def _respread(self, slot: int, generation: int) -> bool:
        """Dial a successor for ``slot`` that avoids every process the tunnel is on.
        If one takes it, it serves the slot from now on (the server tells the old
        connection it moved: it finishes its streams, then closes); False if none did."""
        config = self.config
        for _ in range(MAX_REDIALS):
            try:
                ws = dial(config.server, CONNECT_TIMEOUT)
            except ConnectionLost:
                return False
            try:
                ok, latency = self._authenticate(
                    ws,
                    slot,
                    self._subdomain,
                    required=True,
                    resume=True,
                    avoid=self._other_nodes((slot, generation + 1)),
                )
                break
            except NodeAvoided:
                close_socket(ws)  # a process the tunnel is on: dial again, for another
            except (ConnectionLost, TunnelError, OSError, websocket.WebSocketException):
                close_socket(ws)  # the connections serving now go on as they are
                return False
        else:
            return False
        with self._lock:
            taken = not self._stopping.is_set() and self._generation.get(slot, 0) == generation
            if taken:
                self._generation[slot] = generation + 1
        if not taken:  # stopped, or the slot moved meanwhile (a drain)
            close_socket(ws)
            return False
        self._start(slot, generation + 1, Opened(ws, ok, latency))
        return True

    def _move(self, slot: int, generation: int) -> None:
        """The server process of ``slot``'s connection is stopping: dial its successor
        now (it avoids that process), while this one serves what it has in flight."""
        with self._lock:
            if self._stopping.is_set() or self._generation.get(slot, 0) != generation:
                return
            self._generation[slot] = generation + 1
        self._start(slot, generation + 1)

    def _current(self, slot: int, generation: int) -> bool:
        return not self._stopping.is_set() and self._generation.get(slot, 0) == generation

    def _keep_connection(self, slot: int, generation: int, opened: Opened | None = None) -> None:
        """Keep connection ``slot`` up until stopped or moved: dial, authenticate, serve,
        again. ``opened`` is a connection already authenticated for it, served first."""
        config, events = self.config, self._events
        remembered = None
        if slot == 0 and config.subdomain is None:
            remembered = self._names.get(config.server, config.local_origin)
        subdomain = config.subdomain or remembered
        required = config.subdomain is not None
        held = False  # whether this connection had ``subdomain``: then it resumes it
        failures = redials = 0
        if generation > 0:  # a successor: the tunnel and its subdomain exist
            held = True
        while self._current(slot, generation):
            wait_at_least = 0.0  # what the server asked for, if it did
            if self._max_attempts is not None and failures >= self._max_attempts:
                raise TunnelError("gave up reconnecting")
            if slot > 0 or generation > 0:  # join the tunnel's subdomain, or nothing
                subdomain, required = self._subdomain, True
            try:
                ws = opened.ws if opened is not None else dial(config.server, CONNECT_TIMEOUT)
            except ConnectionLost as exc:
                reason = str(exc)
                wait_at_least = exc.retry_after or 0.0
            else:
                try:
                    if opened is not None:
                        ok, latency, opened = opened.ok, opened.latency, None
                    else:
                        ok, latency = self._authenticate(
                            ws,
                            slot,
                            subdomain,
                            required=required,
                            resume=held,
                            avoid=self._other_nodes((slot, generation))
                            if redials < MAX_REDIALS
                            else (),
                        )
                    ws.settimeout(PING_TIMEOUT)
                    if slot == 0 and subdomain is not None and ok.subdomain != subdomain:
                        events.subdomain_changed(subdomain, ok.subdomain)
                    subdomain, held = ok.subdomain, True
                    if slot == 0 and generation == 0:
                        # A remembered name another tunnel holds now (a second client on
                        # this port) stays remembered: it is the URL webhooks know.
                        if remembered in (None, subdomain):
                            self._names.put(config.server, config.local_origin, subdomain)
                        first = self._subdomain is None
                        self._subdomain = subdomain
                        if first:
                            self._start_others()
                    failures = redials = 0
                    self._serve((slot, generation), ws, ok, latency)
                    reason = "connection lost"
                except NodeAvoided as exc:
                    redials += 1
                    if redials <= MAX_REDIALS:
                        continue  # closed below; dialled again at once, for another process
                    reason = str(exc)
                except ConnectionLost as exc:
                    reason = str(exc) or "connection lost"
                except (OSError, websocket.WebSocketException) as exc:
                    reason = str(exc) or exc.__class__.__name__
                finally:
                    close_socket(ws)
            if not self._current(slot, generation):
                return  # stopped, or moved: the slot's successor carries on
            failures += 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
            delay = max(delay * random.uniform(0.5, 1.5), wait_at_least)
            with self._lock:
                others_up = bool(self._serving)
            if not others_up:
                if held:
                    events.tunnel_down(reason, delay)
                else:
                    events.connect_failed(reason, delay)
            self._stopping.wait(delay)

    def _authenticate(
        self,
        ws: websocket.WebSocket,
        slot: int,
        subdomain: str | None,
        *,
        required: bool,
        resume: bool,
        avoid: tuple[str, ...],
    ) -> tuple[protocol.AuthOk, float | None]:
        """``authenticate`` connection ``slot`` of this tunnel, with its settings."""
        config = self.config
        return authenticate(
            ws,
            config.token,
            subdomain,
            required,
            resume=resume,
            webhooks=config.webhooks,
            rules=config.rules,
            tunnel=self._tunnel_id,
            slot=slot,
            pool=config.pool,
            avoid=avoid,
        )

    def _other_nodes(self, key: tuple[int, int]) -> tuple[str, ...]:
        """The server processes the tunnel's other connections are on (a moving
        predecessor's among them)."""
        with self._lock:
            nodes = {node for other, (_, node) in self._serving.items() if other != key}
        return tuple(sorted(node for node in nodes if node))

    def _serve(
        self,
        key: tuple[int, int],
        ws: websocket.WebSocket,
        ok: protocol.AuthOk,
        latency: float | None,
    ) -> None:
        tunnel = Tunnel(
            ws, self.config, self._events, self._local, on_move=lambda: self._move(*key)
        )
        with self._lock:
            if self._stopping.is_set():
                return
            came_up = not self._serving
            self._serving[key] = (tunnel, ok.node)
            self._connection_came_up.set()
            if came_up:
                self.public_url = ok.url
                self.active.set()
        try:
            if came_up:
                self._events.tunnel_active(
                    ok.url,
                    ok.subdomain,
                    self.config.local_origin,
                    self.config.server,
                    latency,
                    self.config.host_header,
                    ok.rules,
                )
                check_local(self._local, self.config.local_origin, self._events)
            tunnel.run()
        finally:
            with self._lock:
                del self._serving[key]
                if not self._serving:
                    self.active.clear()
                    self.public_url = None

    def stop(self) -> None:
        """End ``run()``: close the tunnel (the server then holds the subdomain for us)."""
        with self._lock:
            self._stopping.set()
            self._connection_came_up.set()
            tunnels = [tunnel for tunnel, _ in self._serving.values()]
        for tunnel in tunnels:
            tunnel.close()


#: Refusals of a subdomain asked for, and what to say the user can do.
_NAME_ADVICE = {
    AuthRefusal.SUBDOMAIN_TAKEN: "choose another name with --subdomain",
    AuthRefusal.SUBDOMAIN_INVALID: "choose another name with --subdomain",
    AuthRefusal.SUBDOMAIN_BLOCKED: "choose another name with --subdomain",
    AuthRefusal.SUBDOMAIN_RESERVED: "use the token it is reserved for, or choose another name",
}


#: Control frames read before the reply to ``auth`` at most (our pong, a ping).
_FRAMES_BEFORE_REPLY = 4


def authenticate(
    ws: websocket.WebSocket,
    token: str,
    subdomain: str | None,
    required: bool = False,
    resume: bool = False,
    webhooks: tuple[str, ...] = (),
    rules: EdgeRules = NO_RULES,
    tunnel: str = "",
    slot: int = 0,
    pool: bool = False,
    avoid: tuple[str, ...] = (),
) -> tuple[protocol.AuthOk, float | None]:
    """Authenticate, and return the server's ``auth_ok`` and the round trip in seconds.

    A ping goes first: the server's WebSocket layer answers it at once, before
    the authentication's database work, so its pong times the network alone.
    Raises WrongServer when the server does not confirm ``rules``: the tunnel
    would be live without them.
    """
    auth = protocol.Auth(
        token=token,
        subdomain=subdomain,
        required=required,
        resume=resume,
        webhooks=webhooks,
        basic_auth=rules.basic_auth,
        allow_cidrs=rules.allow_cidr,
        deny_cidrs=rules.deny_cidr,
        tunnel=tunnel,
        slot=slot,
        pool=pool,
        avoid=avoid,
    )
    ws.ping(ping_payload())
    ws.send(protocol.encode(auth))
    latency = None
    for _ in range(_FRAMES_BEFORE_REPLY):
        opcode, payload = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            latency = round_trip(payload)
        elif opcode != websocket.ABNF.OPCODE_PING:
            break
    else:
        raise ConnectionLost("the server sent no reply to auth")
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        raise ConnectionLost("the server closed the connection during authentication")
    try:
        reply = protocol.decode_from_server(payload)
    except ProtocolError as exc:
        raise ConnectionLost(f"server sent an invalid reply: {exc}") from exc
    match reply:
        case protocol.AuthOk():
            if missing := unconfirmed_webhooks(webhooks, reply.rules):
                raise WrongServer(
                    f"the server does not check {', '.join(missing)} signatures "
                    "(--verify-webhook): it would let unsigned requests through; update it"
                )
            if missing := rules.unconfirmed(reply.rules):
                raise WrongServer(
                    f"the server does not apply {', '.join(missing)} rules (it is older than "
                    "this client); not going live without them"
                )
            return reply, latency
        case protocol.AuthError(code=AuthRefusal.NODE_AVOIDED):
            raise NodeAvoided("this server process holds another connection of the tunnel")
        case protocol.AuthError(code=AuthRefusal.DRAINING):
            raise NodeAvoided("this server process is stopping")
        case protocol.AuthError(message=text, retry=True):
            raise ConnectionLost(f"the server cannot take tunnels now: {text}")
        case protocol.AuthError(message=text, code=AuthRefusal.RULES_REFUSED):
            raise TunnelError(f"the server refused the tunnel's rules: {text}")
        case protocol.AuthError(message=text, code=AuthRefusal.TUNNEL_LIMIT):
            raise TooManyTunnels(
                f"the server refused the tunnel: {text}; close one of them, or ask the "
                "server's operator for more (LUMINET_TUNNELS_PER_TOKEN)"
            )
        case protocol.AuthError(message=text, code=code) if code in _NAME_ADVICE:
            raise NameRefused(f"subdomain refused: {text}; {_NAME_ADVICE[AuthRefusal(code)]}")
        case protocol.AuthError(message=text):
            raise AuthFailed(text)
        case _:
            raise ConnectionLost(f"server sent {type(reply).__name__} instead of auth_ok")


def unconfirmed_webhooks(webhooks: tuple[str, ...], rules: tuple[str, ...]) -> list[str]:
    """The providers asked for that the server's ``auth_ok`` does not name as in force."""
    providers = [spec.partition(":")[0].strip().lower() for spec in webhooks]
    return [name for name in dict.fromkeys(providers) if f"webhook {name}" not in rules]


def check_local(local: LocalAddress, origin: str, events: Events) -> None:
    """Warn, without delaying the tunnel, if nothing answers at the local address."""

    def probe() -> None:
        try:
            local.connect(LOCAL_CHECK_TIMEOUT).close()
        except OSError as exc:
            events.local_unreachable(origin, describe(exc, local.authority))

    threading.Thread(target=probe, name="local-check", daemon=True).start()
