"""A client with its inspector on, and calls to its agent API over real sockets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from harness import Client, Server

from . import rawclient
from .localserver import LocalServer

#: Seconds for the client to report something that already happened.
REPORT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Inspected:
    """A server, a client with its inspector, and the local server behind it."""

    server: Server
    client: Client
    local: LocalServer
    url: str
    subdomain: str
    #: ``http://127.0.0.1:<port>``: the inspector and agent API.
    api: str

    @property
    def api_port(self) -> int:
        port = urlsplit(self.api).port
        assert port is not None
        return port

    def call(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        *,
        host: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> rawclient.Response:
        """One request to the agent API, with ``Host: 127.0.0.1:<port>`` unless told."""
        extra = list(headers or [])
        if body:
            extra.append(("Content-Type", "application/json"))
        return rawclient.request(
            self.api_port,
            method,
            target,
            f"127.0.0.1:{self.api_port}" if host is None else host,
            extra,
            body,
        )

    def get(self, target: str) -> Any:
        response = self.call("GET", target)
        assert response.status == 200, response.body
        return json.loads(response.body)

    def through_tunnel(
        self, method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] = ()
    ) -> rawclient.Response:
        """A public request, returned once the client has reported (and so captured) it."""
        host = f"{self.subdomain}.localhost"
        response = rawclient.request(self.server.port, method, path, host, headers, body)
        self.client.wait_event("exchange", REPORT_TIMEOUT, where={"path": path})
        return response

    def find(self, path: str) -> list[dict[str, Any]]:
        """The captured requests for ``path``, newest first."""
        listed = self.get("/api/requests/http")["requests"]
        return [r for r in listed if r["request"]["uri"] == path]

    def describe(self) -> str:
        return f"{self.server.describe()}\n{self.client.describe()}"
