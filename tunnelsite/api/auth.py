"""Who may call the admin API: a staff session (CSRF checked) or an API key."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuthIsStaff

from tokens.models import ApiKey


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer lmk_…``: an unrevoked API key."""

    openapi_scheme = "bearer"

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return ApiKey.objects.authenticate(token)


class StaffSession(SessionAuthIsStaff):
    """The admin's session cookie, for a staff user; writes need the CSRF token
    (``X-CSRFToken``), as the admin's own forms do."""

    def __call__(self, request: HttpRequest) -> Any:
        # The CSRF check concerns a staff session only: anyone else is simply not
        # authenticated (401), not refused for a missing CSRF token (403).
        user = request.user
        if not (user.is_authenticated and (user.is_staff or user.is_superuser)):
            return None
        return super().__call__(request)
