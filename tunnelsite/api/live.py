"""``/api/tunnels``: live tunnels of every process, and disconnecting one
(``tunnels.live`` does the work, as for the admin's page)."""

from __future__ import annotations

from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from django.http import HttpRequest
from ninja import Router

from tunnels import live

from .schemas import LiveTunnelOut, Problem

router = Router(tags=["live tunnels"])


def _out(tunnel: live.LiveTunnel) -> dict[str, object]:
    return {
        "subdomain": tunnel.subdomain,
        "token_id": tunnel.token_id,
        "token_name": tunnel.token_name,
        "client": tunnel.client,
        "since": datetime.fromtimestamp(tunnel.since, UTC),
        "requests": tunnel.requests,
        "bytes_in": tunnel.bytes_in,
        "bytes_out": tunnel.bytes_out,
        "rules": list(tunnel.rules),
        "connections": tunnel.connections,
        "nodes": tunnel.node.split(", ") if tunnel.node else [],
    }


#: The 503's detail while Redis is unreachable.
UNAVAILABLE = {"detail": "Redis cannot be reached: live tunnels are unavailable; try again"}


@router.get(
    "",
    response={200: list[LiveTunnelOut], 503: Problem},
    summary="List live tunnels, by subdomain",
)
def list_live(request: HttpRequest) -> tuple[int, object]:
    try:
        tunnels = async_to_sync(live.list_live)()
    except live.LiveUnavailable:
        return 503, UNAVAILABLE
    return 200, [_out(tunnel) for tunnel in tunnels]


@router.post(
    "/{subdomain}/disconnect",
    response={204: None, 404: Problem, 503: Problem},
    summary="Disconnect a live tunnel, whichever process holds it; its client exits",
)
def disconnect(request: HttpRequest, subdomain: str) -> tuple[int, dict[str, str] | None]:
    try:
        disconnected = async_to_sync(live.disconnect)(subdomain.lower())
    except live.LiveUnavailable:
        return 503, UNAVAILABLE
    if not disconnected:
        return 404, {"detail": f"{subdomain!r} has no live tunnel"}
    return 204, None
