"""A tunnel's rules at the edge, as data: who may call it and with what.

A :class:`TunnelPolicy` is built once, when a tunnel authenticates, from the rules
its client sent (``client.protocol.Auth``) and its token's allow list. It travels
in the tunnel's registry entry (``tunnels.registry.Route.policy``), so whichever
server process a public request lands on applies the same rules
(``tunnels.edge.rules``). Pure: no Django, no I/O.

Basic-auth credentials arrive in plaintext over the authenticated TLS WebSocket,
because the server must check what callers send; they are kept only as salted
scrypt digests (one random salt per policy), in memory and in Redis alike, and
nothing here ever shows them (``describe``). Webhook secrets cannot be hashed
(the server computes each signature with them): they are kept as sent, in memory
and in the registry entry, and shown only by provider (``webhook github``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from client.webhooks import WebhookSpec, parse_spec

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: scrypt cost (RFC 7914): 2**12 x 8 is 4 MiB and about 7 ms a digest, paid once
#: per credential at auth and once per *new* credential a caller presents (a match
#: is remembered, see ``TunnelPolicy.credentials_match``), so a wrong guess costs
#: the guesser time while a user's browser pays it once per process.
SCRYPT_N = 2**12
SCRYPT_R = 8
SCRYPT_P = 1
DIGEST_BYTES = 32
SALT_BYTES = 16
#: Matching credentials remembered per policy (the header's HMAC, not the header).
VERIFIED_CACHE = 256


class PolicyError(ValueError):
    """Rules that cannot form a policy (say, allow lists with nothing in common)."""


def credential_digest(credential: bytes, salt: bytes) -> bytes:
    """The salted digest of ``user:password`` as kept in a policy."""
    return hashlib.scrypt(
        credential, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=DIGEST_BYTES
    )


@dataclass(frozen=True)
class TunnelPolicy:
    """The rules of one tunnel. An empty policy is falsy: no rule, nothing to check."""

    #: scrypt digests of ``user:password`` (UTF-8) under ``salt``; never plaintext.
    basic_auth: tuple[bytes, ...] = ()
    salt: bytes = b""
    #: Callers must come from one of these, when there are any.
    allow: tuple[Network, ...] = ()
    #: Callers from these are refused, allowed or not.
    deny: tuple[Network, ...] = ()
    #: Webhook signature rules (``tunnels.edge.webhooks``): a request must satisfy one.
    webhooks: tuple[WebhookSpec, ...] = ()
    #: HMACs of Authorization values that matched: a browser sends the same header
    #: on every request, and scrypt per request would cost far more than the request.
    _verified: set[bytes] = field(default_factory=set, compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.basic_auth or self.allow or self.deny or self.webhooks)

    @classmethod
    def build(
        cls,
        credentials: Iterable[str] = (),
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        token_allow: Sequence[Network] = (),
        webhooks: Iterable[str] = (),
    ) -> TunnelPolicy:
        """The policy for rules as a client sends them (already validated by the protocol).

        ``token_allow`` is the token's own allow list (set by the operator): a caller
        must pass it and the tunnel's, so the two are intersected. Raises
        PolicyError when they have no address in common.
        """
        salt = secrets.token_bytes(SALT_BYTES) if credentials else b""
        digests = tuple(credential_digest(c.encode("utf-8"), salt) for c in credentials)
        tunnel_allow = tuple(ipaddress.ip_network(text, strict=False) for text in allow)
        merged = intersect(tunnel_allow, tuple(token_allow))
        if (tunnel_allow or token_allow) and not merged:
            raise PolicyError(
                "the allowed networks (--allow-cidr) lie outside the networks this token "
                "may be reached from: " + ", ".join(str(n) for n in token_allow)
            )
        return cls(
            basic_auth=digests,
            salt=salt,
            allow=merged,
            deny=tuple(ipaddress.ip_network(text, strict=False) for text in deny),
            webhooks=tuple(parse_spec(text) for text in webhooks),
        )

    def credentials_match(self, credential: bytes) -> bool:
        """Whether ``user:password`` (as the caller sent it) is one of the policy's."""
        remembered = hmac.digest(self.salt, credential, "sha256")
        if remembered in self._verified:
            return True
        digest = credential_digest(credential, self.salt)
        # Every digest is compared, in constant time each, so timing does not say
        # which of several credentials came close.
        matched = False
        for known in self.basic_auth:
            matched |= hmac.compare_digest(digest, known)
        if matched:
            if len(self._verified) >= VERIFIED_CACHE:
                self._verified.clear()
            self._verified.add(remembered)
        return matched

    def address_allowed(self, address: Address | None) -> bool:
        """Whether a caller at ``address`` passes the IP rules; an unknown one passes
        only a policy without IP rules."""
        if not (self.allow or self.deny):
            return True
        if address is None:
            return False
        if any(address in network for network in self.deny):
            return False
        return not self.allow or any(address in network for network in self.allow)

    def describe(self) -> list[str]:
        """The rules by name, for people (the admin, the client): never a credential."""
        names = ["basic auth"] if self.basic_auth else []
        names += [f"allow {network}" for network in self.allow]
        names += [f"deny {network}" for network in self.deny]
        names += [rule.describe() for rule in self.webhooks]
        return names

    def to_wire(self) -> dict[str, Any]:
        """The policy as JSON-ready data for the registry (digests, not credentials)."""
        wire: dict[str, Any] = {}
        if self.basic_auth:
            wire["basic_auth"] = [digest.hex() for digest in self.basic_auth]
            wire["salt"] = self.salt.hex()
        if self.allow:
            wire["allow"] = [str(network) for network in self.allow]
        if self.deny:
            wire["deny"] = [str(network) for network in self.deny]
        if self.webhooks:
            # The secrets themselves: whichever process a request lands on must
            # compute its HMAC. The registry is ours alone (README: webhooks).
            wire["webhooks"] = [spec.text() for spec in self.webhooks]
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> TunnelPolicy:
        """Read :meth:`to_wire`'s data back. Raises PolicyError for data it did not write."""
        try:
            return cls(
                basic_auth=tuple(bytes.fromhex(d) for d in wire.get("basic_auth", ())),
                salt=bytes.fromhex(wire.get("salt", "")),
                allow=tuple(ipaddress.ip_network(n) for n in wire.get("allow", ())),
                deny=tuple(ipaddress.ip_network(n) for n in wire.get("deny", ())),
                webhooks=tuple(parse_spec(text) for text in wire.get("webhooks", ())),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise PolicyError(f"not a tunnel policy: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"), sort_keys=True)


@lru_cache(maxsize=1024)
def policy_from_json(text: str) -> TunnelPolicy:
    """:meth:`TunnelPolicy.from_wire` of a JSON text, parsed once per process.

    A registry entry is read on every request; the same text gives the same
    object, so its networks are parsed and its matching credentials remembered once.
    """
    try:
        wire = json.loads(text)
    except ValueError as exc:
        raise PolicyError("tunnel policy is not JSON") from exc
    if not isinstance(wire, dict):
        raise PolicyError("tunnel policy is not a JSON object")
    return TunnelPolicy.from_wire(wire)


def intersect(first: tuple[Network, ...], second: tuple[Network, ...]) -> tuple[Network, ...]:
    """The networks whose addresses are in both lists; an empty list restricts nothing.

    Two CIDR networks are either disjoint or one holds the other, so the
    intersection of two lists is the smaller of every overlapping pair.
    """
    if not first:
        return second
    if not second:
        return first
    result: list[Network] = []
    for a in first:
        for b in second:
            if a.version != b.version or not a.overlaps(b):  # type: ignore[arg-type]
                continue
            smaller = a if a.prefixlen >= b.prefixlen else b
            if smaller not in result:
                result.append(smaller)
    return tuple(result)
