"""The client's exceptions::

TunnelError          the tunnel cannot go on; the CLI prints it and exits non-zero
├── AuthFailed       the server refused the token (exit status 3)
├── NameRefused      the server refused the subdomain asked for (exit status 4)
├── WrongServer      --server does not lead to a Luminet server (exit status 2)
└── TooManyTunnels   the token has as many tunnels as the server allows (exit status 1)
ConnectionLost       the WebSocket to the server broke; the client reconnects
├── NodeAvoided      the connection reached a server process another one is on
└── ConnectionMoved  a newer connection of the tunnel took this one's place (move)
"""

from __future__ import annotations


class TunnelError(Exception):
    """The tunnel cannot continue; the CLI prints the message and exits non-zero."""


class AuthFailed(TunnelError):
    pass


class NameRefused(TunnelError):
    """``--subdomain NAME`` cannot be had; the message says why and what to do."""


class WrongServer(TunnelError):
    """The server URL cannot lead to a Luminet server; the message says what to change."""


class TooManyTunnels(TunnelError):
    """The token has ``LUMINET_TUNNELS_PER_TOKEN`` tunnels open; the message says so."""


class ConnectionLost(Exception):
    """The WebSocket broke; the client reconnects.

    ``retry_after``: seconds the server asked the client to wait, if it did.
    """

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NodeAvoided(ConnectionLost):
    """The server process this connection reached holds another connection of the
    tunnel, and refused it as asked (``Auth.avoid``): dial again at once."""


class ConnectionMoved(ConnectionLost):
    """The server closed this connection after the tunnel's newer one took its place
    (its process is stopping): nothing to reconnect."""
