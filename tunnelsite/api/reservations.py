"""``/api/reservations``: list, reserve, release (``tokens.reservations`` decides)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from tokens import reservations
from tokens.models import Reservation, Token

from .schemas import Problem, ReservationIn, ReservationOut

router = Router(tags=["reservations"])


def _out(reservation: Reservation) -> dict[str, object]:
    return {
        "subdomain": reservation.subdomain,
        "token_id": reservation.token_id,
        "token_name": reservation.token.name,
        "created_at": reservation.created_at,
    }


@router.get("", response=list[ReservationOut], summary="List reserved subdomains")
def list_reservations(request: HttpRequest) -> list[dict[str, object]]:
    return [_out(reservation) for reservation in reservations.reservations()]


@router.post(
    "",
    response={201: ReservationOut, 400: Problem},
    summary="Reserve a subdomain for one token (by id or by name)",
)
def reserve(request: HttpRequest, data: ReservationIn) -> tuple[int, dict[str, object]]:
    if (data.token_id is None) == (data.token_name is None):
        return 400, {"detail": "give exactly one of token_id and token_name"}
    token: Token | str
    if data.token_id is not None:
        found = Token.objects.filter(id=data.token_id).first()
        if found is None:
            return 400, {"detail": f"no token {data.token_id}"}
        token = found
    else:
        token = str(data.token_name)
    try:
        reservation = reservations.reserve(data.subdomain.strip().lower(), token)
    except reservations.ReservationError as exc:
        return 400, {"detail": str(exc)}
    return 201, _out(reservation)


@router.delete(
    "/{subdomain}",
    response={204: None, 404: Problem},
    summary="Release a reserved subdomain",
)
def release(request: HttpRequest, subdomain: str) -> tuple[int, dict[str, str] | None]:
    if not reservations.release(subdomain):
        return 404, {"detail": f"{subdomain!r} is not reserved"}
    return 204, None
