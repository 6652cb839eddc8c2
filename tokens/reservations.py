"""Reserved subdomains: a name only one token's tunnels may have.

The operator reserves a name in the admin, with ``manage.py reserve_subdomain``
or through the admin API; the tunnel server asks :func:`reserved_for` before it
grants a name (``tunnels.tunnel.names``), for ``--subdomain``, remembered names
and random ones alike. A reserved name follows the same label rules and block
list as a name a client asks for, so nothing can be reserved that no client
could ever get.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction

from client.protocol import subdomain_problem
from tokens.models import Reservation, Token, _now


class ReservationError(ValueError):
    """The name cannot be reserved; the message says why (a bad label, a blocked name,
    a name reserved for another token, a token that is unknown, revoked or expired)."""


def blocked(name: str) -> bool:
    """Whether ``name`` is on the server's block list (``LUMINET_BLOCKED_SUBDOMAINS``).

    The one test of the list: ``tunnels.tunnel.names`` asks it for the names clients
    ask for, and reservations for the names operators reserve.
    """
    return name in settings.LUMINET_BLOCKED_SUBDOMAINS


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be reserved, as a sentence; None if it can."""
    if (problem := subdomain_problem(name)) is not None:
        return problem
    if blocked(name):
        return f"{name!r} is on the server's block list (LUMINET_BLOCKED_SUBDOMAINS)"
    return None


def usable_token(name: str) -> Token:
    """The token named ``name`` that is neither revoked nor expired; ReservationError if none."""
    token = Token.objects.usable(_now()).filter(name=name).first()
    if token is None:
        raise ReservationError(f"no token named {name!r} that is neither revoked nor expired")
    return token


def reserve(subdomain: str, token: Token | str) -> Reservation:
    """Reserve ``subdomain`` for ``token`` (a token, or a token's name).

    Reserving a name again for the token that has it returns its reservation.
    Raises ReservationError, a ValueError, saying why it cannot be done.
    """
    if (problem := name_problem(subdomain)) is not None:
        raise ReservationError(problem)
    if isinstance(token, str):
        token = usable_token(token)
    elif token.state != "active":
        raise ReservationError(f"token {token} is {token.state}")
    try:
        with transaction.atomic():
            return Reservation.objects.create(subdomain=subdomain, token=token)
    except IntegrityError:
        holder = Reservation.objects.filter(subdomain=subdomain).select_related("token").first()
        if holder is not None and holder.token_id == token.pk:
            return holder
        raise ReservationError(
            f"{subdomain!r} is already reserved for {holder.token if holder else 'a token'}; "
            "release it first"
        ) from None


def release(subdomain: str) -> bool:
    """Drop the reservation of ``subdomain``; False if there was none."""
    deleted, _ = Reservation.objects.filter(subdomain=subdomain).delete()
    return bool(deleted)


def reservations() -> list[Reservation]:
    """Every reservation with its token, by name."""
    return list(Reservation.objects.select_related("token").order_by("subdomain"))


async def reserved_for(subdomain: str) -> int | None:
    """The id of the token ``subdomain`` is reserved for, if any (one indexed query)."""
    return await (
        Reservation.objects.filter(subdomain=subdomain).values_list("token_id", flat=True).afirst()
    )
