"""Cookies of a tunnel's responses that would reach other tunnels are made host-only.

Every tunnel is a subdomain of one domain, so a local server answering
``Set-Cookie: sid=1; Domain=tunnel.example.com`` would set a cookie that the
browser sends to every other tunnel, and to the tunnel domain itself (RFC 6265
section 5.3, step 6). A ``Domain`` attribute that reaches beyond the tunnel's own
host (the tunnel domain, a parent of it, or a sibling tunnel) is removed, which
makes the cookie host-only. Every other ``Set-Cookie`` line passes byte for byte.
Pure: no Django.
"""

from __future__ import annotations

import re

from client.protocol import Headers

#: A ``Domain`` attribute (RFC 6265 section 5.2.3), after the name=value pair.
_DOMAIN_ATTRIBUTE = re.compile(r";[ \t]*domain[ \t]*=([^;]*)", re.IGNORECASE)


def host_only_cookies(headers: Headers, host: str, tunnel_domain: str) -> Headers:
    """``headers`` with each ``Set-Cookie`` reaching beyond ``host`` made host-only.

    Returns ``headers`` itself when nothing changes (the usual case costs a scan).
    """
    result: Headers | None = None
    for index, (name, value) in enumerate(headers):
        if name.lower() != "set-cookie" or not _DOMAIN_ATTRIBUTE.search(value):
            continue
        fixed = host_only(value, host, tunnel_domain)
        if fixed != value:
            if result is None:
                result = list(headers)
            result[index] = (name, fixed)
    return headers if result is None else result


def host_only(value: str, host: str, tunnel_domain: str) -> str:
    """One ``Set-Cookie`` value, without its Domain attributes if they reach beyond ``host``."""
    # RFC 6265 section 5.3 uses the last Domain attribute, but ignores an empty one
    # (5.2.3), and browsers differ on both counts; so any Domain that reaches beyond
    # the host, wherever it stands, makes the cookie host-only. A leading dot is
    # ignored (5.2.3); a trailing one is dropped too, so "localhost." is no way round.
    host, tunnel_domain = host.lower(), tunnel_domain.lower()
    for domain in _DOMAIN_ATTRIBUTE.findall(value):
        if reaches_beyond(domain.strip().strip(".").lower(), host, tunnel_domain):
            return _DOMAIN_ATTRIBUTE.sub("", value)
    return value


def reaches_beyond(domain: str, host: str, tunnel_domain: str) -> bool:
    """Whether a cookie for ``domain`` set by ``host`` would reach another tunnel."""
    if not domain or domain == host or domain.endswith("." + host):
        return False
    parent = domain == tunnel_domain or tunnel_domain.endswith("." + domain)
    sibling = domain.endswith("." + tunnel_domain)
    return parent or sibling
