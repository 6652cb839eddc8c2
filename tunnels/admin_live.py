"""The admin's live tunnels page and its disconnect action (``tunnels.live`` does the work)."""

from __future__ import annotations

from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from tunnels import live

#: What the page says while Redis is unreachable.
UNAVAILABLE = "Redis cannot be reached: live tunnels cannot be listed or disconnected now."


@require_GET
def live_tunnels(request: HttpRequest) -> HttpResponse:
    context = {**admin.site.each_context(request), "title": "Live tunnels"}
    try:
        tunnels = async_to_sync(live.list_live)()
    except live.LiveUnavailable:
        context["unavailable"] = UNAVAILABLE
        return TemplateResponse(request, "admin/live_tunnels.html", context, status=503)
    context["rows"] = [(tunnel, datetime.fromtimestamp(tunnel.since, UTC)) for tunnel in tunnels]
    return TemplateResponse(request, "admin/live_tunnels.html", context)


@require_POST
def disconnect_tunnel(request: HttpRequest, subdomain: str) -> HttpResponse:
    try:
        disconnected = async_to_sync(live.disconnect)(subdomain)
    except live.LiveUnavailable:
        messages.error(request, UNAVAILABLE)
    else:
        if disconnected:
            messages.success(request, f"Disconnected {subdomain}: its client was told and exits.")
        else:
            messages.warning(request, f"{subdomain} has no live tunnel.")
    return HttpResponseRedirect(reverse("live-tunnels"))
