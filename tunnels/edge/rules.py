"""Checking a public request against its tunnel's policy, before it reaches the tunnel.

The edge router calls :func:`check` once per HTTP request or WebSocket upgrade
of a tunnel that has a policy (``Route.policy``); a tunnel without one costs a
single test there. A refusal is answered by the router with our own page
(``forwarding.ERRORS``) and never reaches the client's local server. Pure: the
caller passes in the proxies it trusts.

Order: IP rules first (403 ``ip-denied``), so a caller from a refused network is
never asked for a password; then basic auth (401 ``auth-required``, RFC 7617).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .policy import Address, Network, TunnelPolicy

#: RFC 7617 section 2: the realm the browser shows; ``charset`` says we read UTF-8.
WWW_AUTHENTICATE = 'Basic realm="luminet", charset="UTF-8"'


class Refusal(Exception):
    """A rule refused the request; ``rule`` names it for the tunnel's owner."""

    code = "refused"

    def __init__(self, rule: str, address: Address | None = None) -> None:
        super().__init__(rule)
        self.rule = rule
        self.address = address

    def headers(self) -> list[tuple[str, str]]:
        """Headers of the refusal besides ``Luminet-Error``."""
        return []


class AuthRequired(Refusal):
    """No credentials, or not the tunnel's: 401 until the caller sends matching ones."""

    code = "auth-required"

    def headers(self) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", WWW_AUTHENTICATE)]


class AddressRefused(Refusal):
    """The caller's address is outside the allow list, or inside the deny list."""

    code = "ip-denied"


def check(
    policy: TunnelPolicy, scope: Mapping[str, Any], trusted: Sequence[Network]
) -> Refusal | None:
    """The refusal of the request in ``scope`` by ``policy``, or None if it may pass."""
    if policy.allow or policy.deny:
        address = caller_address(scope, trusted)
        if not policy.address_allowed(address):
            return AddressRefused(_address_rule(policy, address), address)
    if policy.basic_auth:
        credential = basic_credential(scope)
        if credential is None or not policy.credentials_match(credential):
            rule = "basic auth" if credential is None else "basic auth (wrong credentials)"
            return AuthRequired(rule)
    return None


def _address_rule(policy: TunnelPolicy, address: Address | None) -> str:
    if address is None:
        return "ip rules (caller's address unknown)"
    for network in policy.deny:
        if address in network:
            return f"deny {network}"
    return "allow list"


def admitted(policy: TunnelPolicy, scope: dict[str, Any]) -> dict[str, Any]:
    """The scope to forward once ``check`` passed: with basic auth, the caller's
    ``Authorization`` is ours, and the local server never sees it."""
    if not policy.basic_auth:
        return scope
    headers = [(name, value) for name, value in scope["headers"] if name != b"authorization"]
    return {**scope, "headers": headers}


def basic_credential(scope: Mapping[str, Any]) -> bytes | None:
    """``user:password`` from the first ``Authorization: Basic`` header, or None."""
    for name, value in scope.get("headers", ()):
        if name != b"authorization":
            continue
        scheme, _, encoded = bytes(value).strip().partition(b" ")
        if scheme.lower() != b"basic":
            continue
        try:
            return base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


@dataclass(frozen=True)
class Caller:
    """Who a request comes from, as the proxies we trust saw it."""

    #: The caller's address; None when it cannot be known (a Unix socket, an entry
    #: that is not an address).
    address: Address | None
    #: Whether the connection's peer is one of our proxies, whose X-Forwarded-* count.
    proxied: bool = False
    #: The X-Forwarded-For entries left of the caller's: what the caller (or its own
    #: proxies) claimed, which we pass on but never believe.
    claimed: tuple[str, ...] = ()


def find_caller(scope: Mapping[str, Any], trusted: Sequence[Network]) -> Caller:
    """The public caller: the connection's peer, or behind proxies we trust
    (``LUMINET_TRUSTED_PROXIES``), the right-most ``X-Forwarded-For`` entry that is
    not one of them.

    Every proxy appends the address it saw, so entries to the right of the first
    untrusted one were written by our proxies and those to its left by whoever the
    caller is: a header from an untrusted peer decides nothing.
    """
    client = scope.get("client")
    peer = _address(str(client[0])) if client else None
    if peer is None or not _trusted(peer, trusted):
        return Caller(peer)
    entries = [
        part.strip()
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
        for part in bytes(value).decode("latin-1").split(",")
    ]
    address: Address | None = peer
    for index in range(len(entries) - 1, -1, -1):
        address = _address(entries[index])
        if address is None or not _trusted(address, trusted):
            return Caller(address, proxied=True, claimed=tuple(entries[:index]))
    # Every entry is one of our proxies: the left-most is the nearest we know of.
    return Caller(address, proxied=True)


def caller_address(scope: Mapping[str, Any], trusted: Sequence[Network]) -> Address | None:
    """The public caller's address (:func:`find_caller`)."""
    return find_caller(scope, trusted).address


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def _address(text: str) -> Address | None:
    """An address as a peer or an X-Forwarded-For entry writes it; IPv4 in IPv6 as IPv4."""
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
