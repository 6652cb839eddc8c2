"""Views of the main host: the health check."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse


async def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})
