"""The admin API under ``/api/`` on the main host (django-ninja): tokens, live
tunnels, reservations and usage, described by ``/api/openapi.json``.

A caller is a staff user's admin session (with Django's CSRF token on writes)
or an API key (``Authorization: Bearer lmk_…``, issued in the admin or by
``manage.py issue_api_key``); a tunnel token opens nothing here. The routers are
thin: each calls the plain module that owns what it serves.
"""

from __future__ import annotations

from ninja import NinjaAPI

from .auth import ApiKeyAuth, StaffSession
from .live import router as live_router
from .reservations import router as reservations_router
from .tokens import router as tokens_router
from .usage import router as usage_router

api = NinjaAPI(
    title="Luminet admin API",
    version="1",
    description="Tokens, live tunnels, reservations and usage of a Luminet server.",
    auth=[ApiKeyAuth(), StaffSession()],
    # The interactive docs page loads its script from a CDN; the server fetches
    # nothing from the internet, so only the description is served.
    docs_url=None,
    urls_namespace="api",
)
api.add_router("/tokens", tokens_router)
api.add_router("/usage", usage_router)
api.add_router("/reservations", reservations_router)
api.add_router("/tunnels", live_router)
