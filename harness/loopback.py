"""HTTPS to names that only browsers and curl resolve: ``<sub>.luminet.localhost``.

Python's resolver does not map ``*.localhost`` to loopback, so these connect to
127.0.0.1 at the URL's port and keep the URL's host name for everything else: the
TLS server name (SNI), the certificate's check against a given CA, and ``Host``.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

#: Where every connection goes.
LOOPBACK = "127.0.0.1"
#: Seconds to connect and finish the TLS handshake.
CONNECT_TIMEOUT = 10.0


class LoopbackAdapter(HTTPAdapter):
    """A requests adapter that connects to 127.0.0.1 whatever the URL's host."""

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        hostname = urlsplit(request.url).hostname
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = hostname
            pool_kwargs["assert_hostname"] = hostname
        return self.poolmanager.connection_from_host(
            LOOPBACK, host_params["port"], scheme=host_params["scheme"], pool_kwargs=pool_kwargs
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        # urllib3 would name the pool's host (127.0.0.1) in Host: name the URL's instead.
        request.headers.setdefault("Host", urlsplit(request.url).netloc)
        return super().send(request, *args, **kwargs)


def session(ca: Path) -> requests.Session:
    """A requests session that trusts ``ca`` alone and reaches every host on 127.0.0.1."""
    loopback = requests.Session()
    loopback.verify = str(ca)
    loopback.trust_env = False  # never a proxy from the environment
    for scheme in ("http://", "https://"):
        loopback.mount(scheme, LoopbackAdapter())
    return loopback


def tls_socket(host: str, port: int, ca: Path, timeout: float = CONNECT_TIMEOUT) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:``port`` as ``host``, its certificate checked against
    ``ca``; offers HTTP/1.1 alone (WebSocket handshakes)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection((LOOPBACK, port), timeout=timeout)
    try:
        return context.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise
