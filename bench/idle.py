"""Idle tunnels opened by the bench itself, speaking the wire protocol of ``client.protocol``.

A real client process per tunnel would cost the machine more than the server
being measured; a WebSocket that has sent ``auth`` and received ``auth_ok`` is
what the server holds for an idle tunnel either way.
"""

from __future__ import annotations

import contextlib

import websocket

from client import protocol

#: Seconds to connect and authenticate one tunnel.
CONNECT_TIMEOUT = 10.0


class IdleTunnels:
    """Open tunnels with one token; close them all in ``close()``."""

    def __init__(self, ws_url: str, token: str) -> None:
        self.ws_url = ws_url
        self._token = token
        self.sockets: list[websocket.WebSocket] = []

    def open(self, count: int) -> list[str]:
        """Open ``count`` more tunnels; return their subdomains."""
        subdomains = []
        for _ in range(count):
            ws = websocket.create_connection(self.ws_url, timeout=CONNECT_TIMEOUT)
            self.sockets.append(ws)
            ws.send(protocol.encode(protocol.Auth(token=self._token)))
            reply = protocol.decode(ws.recv())
            if not isinstance(reply, protocol.AuthOk):
                raise RuntimeError(f"idle tunnel refused: {reply!r}")
            subdomains.append(reply.subdomain)
        return subdomains

    def close(self) -> None:
        for ws in self.sockets:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                ws.close(timeout=1)
        self.sockets.clear()
