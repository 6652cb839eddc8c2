"""Serve the operator's pages (admin, API, metrics) on LUMINET_ADMIN_HOST alone.

Only the main host and the admin host reach Django's stack (``tunnels.edge.router``);
this middleware picks their URLconf. With no admin host, the main host serves all.
"""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

ADMIN_URLCONF = "tunnelsite.admin_urls"
SITE_URLCONF = "tunnelsite.site_urls"


def urlconf_for(host: str) -> str | None:
    """The URLconf for a request to ``host`` (``Host`` with its port), None for the default."""
    admin_host = settings.LUMINET_ADMIN_HOST
    if not admin_host:
        return None
    hostname = host.rpartition(":")[0] if host.rsplit(":", 1)[-1].isdigit() else host
    return ADMIN_URLCONF if hostname.lower().rstrip(".") == admin_host else SITE_URLCONF


class AdminHostMiddleware:
    """Set ``request.urlconf`` by host; sync and async alike, so it adds no thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.is_async:
            return self.__acall__(request)  # type: ignore[return-value]
        request.urlconf = urlconf_for(request.get_host())
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        request.urlconf = urlconf_for(request.get_host())
        return await self.get_response(request)
