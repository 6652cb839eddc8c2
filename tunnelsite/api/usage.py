"""``/api/usage``: requests, bytes and refusals per token and day (UTC)."""

from __future__ import annotations

from datetime import date

from django.http import HttpRequest
from ninja import Router

from tokens.models import DailyUsage

from .schemas import UsageOut

router = Router(tags=["usage"])

#: Rows returned at most: a year of days for a handful of tokens.
MAX_ROWS = 5000


@router.get("", response=list[UsageOut], summary="Usage per token and day, newest first")
def usage(
    request: HttpRequest,
    token_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[dict[str, object]]:
    rows = DailyUsage.objects.select_related("token")
    if token_id is not None:
        rows = rows.filter(token_id=token_id)
    if since is not None:
        rows = rows.filter(day__gte=since)
    if until is not None:
        rows = rows.filter(day__lte=until)
    return [
        {
            "token_id": row.token_id,
            "token_name": row.token.name,
            "day": row.day,
            "requests": row.requests,
            "bytes_in": row.bytes_in,
            "bytes_out": row.bytes_out,
            "refusals": row.refusals,
        }
        for row in rows[:MAX_ROWS]
    ]
