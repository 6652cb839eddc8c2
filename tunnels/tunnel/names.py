"""Which subdomain a new tunnel gets: the one it asks for, when it may have it.

A client asks for a name in two ways (``client.protocol.Auth``):

- required (``--subdomain NAME``): that name or a refusal saying why, so a
  webhook URL never silently changes;
- preferred (the name it had last time, remembered by the client): that name
  when it is free, otherwise a random one.

Either way a live tunnel keeps its name, unless the client asking is resuming
it (it held the name on the connection it lost: ``Auth.resume``).

A name is granted when it follows the label rules, is not on the block list
(``LUMINET_BLOCKED_SUBDOMAINS``), is not reserved for another token, and no other
token holds it live or in its grace period (the registry decides that last part,
atomically). Generated names follow the same rules.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from django.conf import settings

from client.protocol import (
    SUBDOMAIN_ALPHABET,
    SUBDOMAIN_LENGTH,
    AuthRefusal,
    subdomain_problem,
)
from tokens.reservations import blocked
from tunnels.edge.policy import TunnelPolicy
from tunnels.registry import ALONE, Claim, Member, Registry, RegistryError

#: Random subdomains to try before giving up (36**6 names: collisions are rare).
CLAIM_ATTEMPTS = 20

#: Which token a name is reserved for, if any (the operator's reservations).
ReservedFor = Callable[[str], Awaitable[int | None]]


class NameRefused(Exception):
    """The required subdomain cannot be granted; ``code`` says why."""

    def __init__(self, code: AuthRefusal, message: str) -> None:
        super().__init__(message)
        self.code = code


async def not_reserved(name: str) -> int | None:
    """No name is reserved (a session passes ``tokens.reservations.reserved_for``)."""
    return None


def random_subdomain() -> str:
    return "".join(secrets.choice(SUBDOMAIN_ALPHABET) for _ in range(SUBDOMAIN_LENGTH))


async def grant_subdomain(
    registry: Registry,
    token_id: int,
    channel: str,
    requested: str | None,
    required: bool,
    resume: bool = False,
    reserved_for: ReservedFor = not_reserved,
    policy: TunnelPolicy | None = None,
    rate_limit: int = 0,
    member: Member = ALONE,
) -> tuple[str, Claim]:
    """Claim the subdomain this token asked for, or (unless required) a random one,
    with the tunnel's ``policy`` and ``rate_limit`` in its registry entry.

    Raises :class:`NameRefused` for a required name it may not have, and
    ``RegistryError`` when no name could be claimed at all.
    """
    if requested is not None:
        refusal = await _refusal(
            registry, token_id, channel, requested, resume, reserved_for, policy, rate_limit, member
        )
        if isinstance(refusal, Claim):
            return requested, refusal
        if required:
            raise refusal
    for _ in range(CLAIM_ATTEMPTS):
        candidate = random_subdomain()
        if blocked(candidate) or await reserved_for(candidate) is not None:
            continue
        claim = await registry.claim(
            candidate, token_id, channel, policy=policy, rate_limit=rate_limit, member=member
        )
        if claim.granted:
            return candidate, claim
    raise RegistryError("no free subdomain found")


async def _refusal(
    registry: Registry,
    token_id: int,
    channel: str,
    name: str,
    resume: bool,
    reserved_for: ReservedFor,
    policy: TunnelPolicy | None,
    rate_limit: int,
    member: Member = ALONE,
) -> Claim | NameRefused:
    """The granted claim on ``name``, or why it cannot be had."""
    if (problem := subdomain_problem(name)) is not None:
        return NameRefused(
            AuthRefusal.SUBDOMAIN_INVALID, f"{name!r} is not a valid name: {problem}"
        )
    if blocked(name):
        return NameRefused(
            AuthRefusal.SUBDOMAIN_BLOCKED, f"{name!r} is not available on this server"
        )
    holder = await reserved_for(name)
    if holder is not None and holder != token_id:
        return NameRefused(
            AuthRefusal.SUBDOMAIN_RESERVED, f"{name!r} is reserved for another token"
        )
    claim = await registry.claim(
        name,
        token_id,
        channel,
        take_over=resume,
        policy=policy,
        rate_limit=rate_limit,
        member=member,
    )
    if not claim.granted:
        return NameRefused(
            AuthRefusal.SUBDOMAIN_TAKEN,
            f"{name!r} is in use by another tunnel (or was, by another token, less than "
            f"{settings.LUMINET_SUBDOMAIN_GRACE:.0f} s ago)",
        )
    return claim
