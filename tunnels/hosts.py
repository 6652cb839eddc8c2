"""Which host a request is for: the main site, a tunnel, or nothing we serve."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings

#: One DNS label (RFC 1123), lower case: what may stand before the tunnel domain.
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT_RE = re.compile(r":[0-9]{1,5}$")


@dataclass(frozen=True)
class MainHost:
    pass


@dataclass(frozen=True)
class TunnelHost:
    subdomain: str


def classify(host: str) -> MainHost | TunnelHost | None:
    """Sort a Host header value: the main host, ``<label>.<domain>``, or unknown."""
    hostname = _PORT_RE.sub("", host.strip()).lower().rstrip(".")
    domain = settings.LUMINET_TUNNEL_DOMAIN
    if hostname == domain or hostname == settings.LUMINET_ADMIN_HOST:
        # The admin host, when set, takes the main host's stack too (tunnelsite.adminhost).
        return MainHost()
    label, dot, rest = hostname.partition(".")
    if dot and rest == domain and _LABEL_RE.fullmatch(label):
        return TunnelHost(label)
    return None


def public_url(subdomain: str) -> str:
    port = settings.LUMINET_PUBLIC_PORT
    netloc = f"{subdomain}.{settings.LUMINET_TUNNEL_DOMAIN}" + (f":{port}" if port else "")
    return f"{settings.LUMINET_PUBLIC_SCHEME}://{netloc}"


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None
