"""Authenticate tunnel clients by token, from async code.

Every failure is ``None``, whatever the reason (malformed, unknown, revoked,
expired), so callers cannot tell them apart and neither can a peer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from tokens import crypto
from tokens.models import Token, _now


@dataclass(frozen=True)
class AuthenticatedToken:
    id: int
    name: str
    prefix: str
    #: Networks the token's tunnels may be called from (``models.parse_cidrs``); "" for any.
    allowed_cidrs: str = ""
    #: Requests per limit window per tunnel of this token; None for the server's default.
    rate_limit: int | None = None


async def authenticate(plaintext: str, *, now: datetime | None = None) -> AuthenticatedToken | None:
    """Return the usable token matching plaintext and record its use, or None."""
    if not crypto.looks_like_token(plaintext):
        return None
    now = _now() if now is None else now
    try:
        token_id, name, prefix, allowed_cidrs, rate_limit = (
            await Token.objects.usable(now)
            .filter(digest=crypto.digest(plaintext))
            .values_list("id", "name", "prefix", "allowed_cidrs", "rate_limit")
            .aget()
        )
    except Token.DoesNotExist:
        return None
    finally:
        await _release_connections()
    await Token.objects.filter(id=token_id).aupdate(last_used_at=now)
    await _release_connections()
    return AuthenticatedToken(token_id, name, prefix, allowed_cidrs, rate_limit)


async def is_still_valid(token_id: int, *, now: datetime | None = None) -> bool:
    """Tell whether the token still exists and is neither revoked nor expired."""
    now = _now() if now is None else now
    try:
        return await Token.objects.usable(now).filter(id=token_id).aexists()
    finally:
        await _release_connections()


async def _release_connections() -> None:
    """Close connections that are broken or past CONN_MAX_AGE, as a request's end would.

    Long-lived consumers call this module, not views, so no request cycle does it.
    """
    await sync_to_async(close_old_connections)()
