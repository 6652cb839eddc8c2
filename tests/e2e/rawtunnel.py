"""A tunnel WebSocket driven by hand: it sends what the test says, nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

import websocket

from client import protocol

if TYPE_CHECKING:
    from .conftest import Token


class RawTunnel:
    """Authenticated with ``token`` (unless None) and asking for ``subdomain``, as a
    client resuming it after a lost connection does (``resume``)."""

    def __init__(
        self,
        ws_url: str,
        token: Token | None,
        subdomain: str | None = None,
        *,
        resume: bool = True,
        required: bool = False,
    ) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=15)
        self.subdomain = ""
        self.url = ""
        if token is not None:
            auth = protocol.Auth(
                token=token.value, subdomain=subdomain, required=required, resume=resume
            )
            self.ws.send(protocol.encode(auth))
            reply = protocol.decode(self.ws.recv())
            assert isinstance(reply, protocol.AuthOk), reply
            self.subdomain, self.url = reply.subdomain, reply.url

    def close_code(self) -> int | None:
        """Read until the server's close frame; return its code."""
        while True:
            opcode, payload = self.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None

    def close(self) -> None:
        if self.ws.connected:
            self.ws.close(timeout=2)
        # close() leaves the socket open once the server has closed first.
        self.ws.shutdown()
