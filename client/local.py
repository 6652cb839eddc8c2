"""The local server: the one address the client connects to, and the Host it is shown.

``--host localhost`` reaches the local server on IPv4 or IPv6, whichever answers:
recent Node and Vite dev servers listen on ``::1`` only, while ``localhost`` may
resolve to ``127.0.0.1`` alone (as in many ``/etc/hosts``). The address that
answered is tried first from then on. Any other host is used exactly as given.

``--host-header`` decides the ``Host`` the local server sees (as ngrok's flag):
``preserve`` (the default) passes the public one on; ``rewrite`` sends the local
address (``localhost:3000``), which dev servers that check the host (Vite,
webpack, Django's ``ALLOWED_HOSTS``, Rails) accept; any other value is sent as
is. ``X-Forwarded-Host`` always carries the public host.
"""

from __future__ import annotations

import errno
import http.client
import re
import socket
import threading

from .protocol import Headers

PRESERVE = "preserve"
REWRITE = "rewrite"
#: What a literal --host-header may be: a host, optionally with a port.
_HOST_VALUE = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")

#: Where "localhost" may be listening, in the order first tried.
_LOOPBACKS = ("127.0.0.1", "::1")


def host_header_problem(value: str) -> str | None:
    """What is wrong with ``value`` for --host-header, as a sentence; None if fine."""
    if value in (PRESERVE, REWRITE) or _HOST_VALUE.fullmatch(value):
        return None
    return "use preserve, rewrite, or a host name such as example.test:8080"


class LocalAddress:
    """``host``:``port``, connected to by every request and WebSocket of the tunnel."""

    def __init__(self, host: str, port: int, host_header: str = PRESERVE) -> None:
        self.host = host
        self.port = port
        self._host_header = host_header
        self._lock = threading.Lock()
        self._order = list(_LOOPBACKS) if host == "localhost" else [host]

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def connect(self, timeout: float | None = None) -> socket.socket:
        """A connected socket; raises the failure of the last address tried."""
        with self._lock:
            order = list(self._order)
        failure: OSError | None = None
        for host in order:
            try:
                sock = socket.create_connection((host, self.port), timeout=timeout)
            except OSError as exc:
                failure = exc
                continue
            if host != order[0]:
                with self._lock:
                    self._order.remove(host)
                    self._order.insert(0, host)
            return sock
        assert failure is not None
        raise failure

    def headers(self, headers: Headers) -> Headers:
        """The public request's headers with the ``Host`` the local server is to see."""
        match self._host_header:
            case "preserve":
                return headers
            case "rewrite":
                value = self.authority
            case value:
                pass
        replaced = [(n, value) if n.lower() == "host" else (n, v) for n, v in headers]
        if not any(n.lower() == "host" for n, _ in headers):
            replaced.insert(0, ("Host", value))
        return replaced


class LocalHTTPConnection(http.client.HTTPConnection):
    """``http.client``'s connection, opened through :class:`LocalAddress`."""

    def __init__(self, address: LocalAddress) -> None:
        super().__init__(address.host, address.port)
        self._address = address

    def connect(self) -> None:
        timeout = self.timeout if isinstance(self.timeout, (int, float)) else None
        self.sock = self._address.connect(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def unreachable(exc: BaseException) -> bool:
    """Whether connecting found nothing at the local address (as opposed to a broken answer)."""
    return isinstance(exc, (ConnectionRefusedError, socket.gaierror)) or (
        isinstance(exc, OSError)
        and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL)
    )


def describe(exc: BaseException, address: str = "the local server") -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {address}"
    if isinstance(exc, socket.gaierror):
        return f"{address.rpartition(':')[0]} does not resolve"
    if isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
        return "local server closed the connection"
    if isinstance(exc, http.client.IncompleteRead):
        return "local server closed the connection mid-response"
    if isinstance(exc, http.client.HTTPException):
        return f"local server sent an invalid response ({exc.__class__.__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"local server unreachable: {exc.strerror}"
    return f"local server error ({exc.__class__.__name__})"
