"""Views of the main host: the landing page, the one-file client, the health check, the
metrics."""

from __future__ import annotations

import functools

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import condition, require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from client import pyz
from tokens.models import ApiKey
from tunnels import drain
from tunnels import metrics as tunnel_metrics
from tunnels.hosts import public_url


async def health(request: HttpRequest) -> HttpResponse:
    # A stopping process says so, and the proxy's health check takes it out (drain).
    if drain.state.active:
        return JsonResponse({"status": "draining"}, status=503)
    return JsonResponse({"status": "ok"})


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """What this server is, and the two commands that expose a local port from anywhere."""
    download, run = pyz.install_commands(settings.LUMINET_PUBLIC_URL)
    context = {
        "public_url": settings.LUMINET_PUBLIC_URL,
        "domain": settings.LUMINET_TUNNEL_DOMAIN,
        "example_tunnel": public_url("NAME"),
        "download_command": download,
        "run_command": run,
        "minimum_python": pyz.MINIMUM_PYTHON_NAME,
        "module_command": pyz.module_command(settings.LUMINET_PUBLIC_URL),
        "admin_url": settings.LUMINET_ADMIN_URL,
    }
    return render(request, "tunnels/landing.html", context)


@functools.cache
def client_archive() -> pyz.Archive:
    """``luminet.pyz``, built at its first request: the sources do not change while we run.

    Two first requests at once may both build it; they build the same bytes.
    """
    return pyz.build()


def _archive_etag(request: HttpRequest) -> str:
    return f'"{client_archive().sha256}"'


# Sync views: Django runs them on a worker thread, so the first request's build (some
# tens of milliseconds) never holds up the event loop the tunnels run on.
@require_safe
@condition(etag_func=_archive_etag)
def client_download(request: HttpRequest) -> HttpResponse:
    """The client in one file; its ETag is its SHA-256, so ``If-None-Match`` gets a 304."""
    response = HttpResponse(client_archive().data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{pyz.ARCHIVE_NAME}"'
    # Revalidated at each use: an upgraded server serves a new client under the same URL.
    response["Cache-Control"] = "no-cache"
    return response


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """This process's Prometheus metrics, for a caller with an API key (``Bearer lmk_…``).

    A sync view: the key's lookup is a database query, which Django runs on a worker
    thread, not on the event loop the tunnels run on.
    """
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or ApiKey.objects.authenticate(key.strip()) is None:
        response = HttpResponse(
            "an API key is required (Authorization: Bearer lmk_...)\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="luminet metrics"'
        return response
    return HttpResponse(generate_latest(tunnel_metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST)
