"""``/api/tokens``: list, issue (the plaintext once), show, revoke."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from tokens.models import DuplicateName, Token, _now, parse_cidrs

from .schemas import IssuedToken, Problem, TokenIn, TokenOut

router = Router(tags=["tokens"])


def _out(token: Token) -> dict[str, object]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "state": token.state,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "expires_at": token.expires_at,
        "allowed_cidrs": token.allowed_cidrs,
        "rate_limit": token.rate_limit,
    }


@router.get("", response=list[TokenOut], summary="List tokens, newest first")
def list_tokens(request: HttpRequest) -> list[dict[str, object]]:
    return [_out(token) for token in Token.objects.all()]


@router.post(
    "",
    response={201: IssuedToken, 400: Problem, 409: Problem},
    summary="Issue a token; the answer holds its plaintext, the one time it is shown",
)
def issue_token(request: HttpRequest, data: TokenIn) -> tuple[int, dict[str, object]]:
    name = data.name.strip()
    if not name:
        return 400, {"detail": "name must not be blank"}
    try:
        parse_cidrs(data.allowed_cidrs)
    except ValueError as exc:
        return 400, {"detail": f"allowed_cidrs: {exc}"}
    if data.expires_at is not None and data.expires_at <= _now():
        return 400, {"detail": "expires_at must be in the future"}
    try:
        token, plaintext = Token.objects.issue(name, expires_at=data.expires_at)
    except DuplicateName as exc:
        return 409, {"detail": str(exc)}
    if data.allowed_cidrs or data.rate_limit is not None:
        token.allowed_cidrs = data.allowed_cidrs.strip()
        token.rate_limit = data.rate_limit
        token.save(update_fields=["allowed_cidrs", "rate_limit"])
    return 201, {**_out(token), "token": plaintext}


@router.get("/{int:token_id}", response={200: TokenOut, 404: Problem}, summary="One token")
def get_token(request: HttpRequest, token_id: int) -> tuple[int, dict[str, object]]:
    token = Token.objects.filter(id=token_id).first()
    if token is None:
        return 404, {"detail": f"no token {token_id}"}
    return 200, _out(token)


@router.post(
    "/{int:token_id}/revoke",
    response={200: TokenOut, 404: Problem},
    summary="Revoke a token; its live tunnels close within a heartbeat",
)
def revoke_token(request: HttpRequest, token_id: int) -> tuple[int, dict[str, object]]:
    tokens = Token.objects.filter(id=token_id)
    if not tokens.exists():
        return 404, {"detail": f"no token {token_id}"}
    tokens.revoke()
    token = tokens.get()
    return 200, _out(token)
