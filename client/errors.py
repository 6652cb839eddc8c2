"""The client's exceptions::

TunnelError          the tunnel cannot go on; the CLI prints it and exits non-zero
├── AuthFailed       the server refused the token (exit status 3)
├── NameRefused      the server refused the subdomain asked for (exit status 4)
└── WrongServer      --server does not lead to a Luminet server (exit status 2)
ConnectionLost       the WebSocket to the server broke; the client reconnects
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


class ConnectionLost(Exception):
    """The WebSocket broke; the client reconnects."""
