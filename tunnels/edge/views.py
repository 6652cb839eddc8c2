"""The catch-all view of tunnel hosts. Glue only."""

from __future__ import annotations

import asyncio
import dataclasses

from django.conf import settings
from django.http import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from tunnels.relay.errors import InvalidResponse, TunnelError
from tunnels.relay.stream import open_stream

from .cookies import host_only_cookies
from .forwarding import (
    InvalidRequest,
    UpstreamResponse,
    error_response,
    request_head,
)
from .request import TunnelRequest


@csrf_exempt
async def forward(request: TunnelRequest) -> HttpResponseBase:
    """Send the request through the tunnel and stream the local server's answer back."""
    route = request.route
    try:
        head = request_head(request)
        stream = await open_stream(route, head, request.body_reader.read)
    except (InvalidRequest, TunnelError) as exc:
        return error_response(exc, route.subdomain)
    try:
        response = await stream.response(settings.LUMINET_REQUEST_TIMEOUT)
    except TunnelError as exc:
        await stream.close()
        return error_response(exc, route.subdomain)
    except asyncio.CancelledError:
        # The public client went away while we waited: tell the local side.
        await stream.close()
        raise
    host = f"{route.subdomain}.{settings.LUMINET_TUNNEL_DOMAIN}"
    headers = host_only_cookies(response.headers, host, settings.LUMINET_TUNNEL_DOMAIN)
    if headers is not response.headers:
        response = dataclasses.replace(response, headers=headers)
    try:
        return UpstreamResponse(stream, response, head.method)
    except InvalidResponse as exc:
        await stream.close()
        return error_response(exc, route.subdomain)
