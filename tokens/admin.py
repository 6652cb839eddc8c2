"""Admin for tokens: issue (the plaintext is shown once, on the response page, with the
client commands that use it), list, revoke."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import ngettext

from client.pyz import MINIMUM_PYTHON_NAME, install_commands
from tokens.models import Token, TokenQuerySet

_ADD_FIELDS = ("name", "expires_at")
_CHANGE_FIELDS = ("name", "prefix", "state", "created_at", "last_used_at", "expires_at", "revoked")


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "created_at", "last_used_at", "expires_at", "state")
    list_filter = ("revoked",)
    search_fields = ("name", "prefix")
    actions = ("revoke",)
    issued_template = "admin/tokens/token/issued.html"

    def get_fields(self, request: HttpRequest, obj: Token | None = None):
        return _ADD_FIELDS if obj is None else _CHANGE_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: Token | None = None):
        return () if obj is None else tuple(f for f in _CHANGE_FIELDS if f != "name")

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        # The add response is always the issued page, so offer only "Save".
        extra_context = {
            **(extra_context or {}),
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
        }
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Token, form, change: bool) -> None:
        if not change:
            # Kept on the instance only until response_add renders it: never in
            # messages (cookies, session) or a URL.
            obj._issued_plaintext = obj.assign_secret()  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: Token, post_url_continue: str | None = None
    ) -> HttpResponse:
        """Show the new token's plaintext, the one time it is ever shown, and the commands
        that run the client with it."""
        plaintext = obj.__dict__.pop("_issued_plaintext")
        download, run = install_commands(settings.LUMINET_PUBLIC_URL, plaintext)
        context = {
            **self.admin_site.each_context(request),
            "title": "Token issued",
            "opts": self.opts,
            "token": obj,
            "plaintext": plaintext,
            "download_command": download,
            "run_command": run,
            "minimum_python": MINIMUM_PYTHON_NAME,
        }
        response = TemplateResponse(request, self.issued_template, context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: TokenQuerySet) -> None:
        count = queryset.revoke()
        self.message_user(
            request,
            ngettext("Revoked %d token.", "Revoked %d tokens.", count) % count,
        )
