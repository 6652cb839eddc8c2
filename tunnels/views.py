"""Views: the health check and the catch-all that forwards tunnel hosts. Glue only."""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import relay
from .forwarding import (
    InvalidRequest,
    InvalidResponse,
    UpstreamResponse,
    error_response,
    request_head,
)


async def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@csrf_exempt
async def forward(request: HttpRequest) -> HttpResponseBase:
    """Send the request through the tunnel and stream the local server's answer back."""
    subdomain = request.tunnel_subdomain  # type: ignore[attr-defined]
    try:
        head = request_head(request)
        body = request.tunnel_body  # type: ignore[attr-defined]
        stream = await relay.open_stream(subdomain, head, body.read)
    except (InvalidRequest, relay.TunnelError) as exc:
        return error_response(exc, subdomain)
    try:
        response = await stream.response(settings.LUMINET_REQUEST_TIMEOUT)
    except relay.TunnelError as exc:
        await stream.close()
        return error_response(exc, subdomain)
    except asyncio.CancelledError:
        # The public client went away while we waited: tell the local side.
        await stream.close()
        raise
    try:
        return UpstreamResponse(stream, response, head.method)
    except InvalidResponse as exc:
        await stream.close()
        return error_response(exc, subdomain)
