"""Admin for tokens and API keys: issue (the plaintext is shown once, on the page the
add form redirects to, with the client commands that use it; ``tokens.issued``), list,
revoke."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import ngettext

from client.pyz import MINIMUM_PYTHON_NAME, install_commands, module_command
from tokens.issued import IssuedOnceAdmin
from tokens.models import ApiKey, Reservation, Token, TokenQuerySet
from tokens.reservations import name_problem
from tokens.usage_admin import DailyUsageInline

_ADD_FIELDS = ("name", "expires_at")
_CHANGE_FIELDS = ("name", "prefix", "state", "created_at", "last_used_at", "expires_at", "revoked")


class TokenForm(forms.ModelForm):
    def clean_name(self) -> str:
        # The model's constraint is conditional on `revoked`, which the form lacks, so
        # Django's own check skips it: a duplicate would fail only at the database.
        name = self.cleaned_data["name"].strip()
        in_use = Token.objects.filter(name=name, revoked=False).exclude(pk=self.instance.pk)
        if in_use.exists():
            raise forms.ValidationError(
                "A token with this name is in use: revoke it first, or choose another name."
            )
        return name


@admin.register(Token)
class TokenAdmin(IssuedOnceAdmin):
    form = TokenForm
    list_display = ("name", "prefix", "created_at", "last_used_at", "expires_at", "state")
    list_filter = ("revoked",)
    search_fields = ("name", "prefix")
    actions = ("revoke",)
    issued_template = "admin/tokens/token/issued.html"

    def get_inlines(self, request: HttpRequest, obj: Token | None):
        return () if obj is None else (DailyUsageInline,)

    def get_fields(self, request: HttpRequest, obj: Token | None = None):
        return _ADD_FIELDS if obj is None else _CHANGE_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: Token | None = None):
        return () if obj is None else tuple(f for f in _CHANGE_FIELDS if f != "name")

    def assign_secret(self, obj: Token) -> str:
        return obj.assign_secret()

    def issued_context(self, request: HttpRequest, obj: Token, plaintext: str) -> dict:
        download, run = install_commands(settings.LUMINET_PUBLIC_URL, plaintext)
        return {
            "download_command": download,
            "run_command": run,
            "module_command": module_command(settings.LUMINET_PUBLIC_URL, plaintext),
            "minimum_python": MINIMUM_PYTHON_NAME,
        }

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: TokenQuerySet) -> None:
        count = queryset.revoke()
        self.message_user(
            request,
            ngettext("Revoked %d token.", "Revoked %d tokens.", count) % count,
        )


class ReservationForm(forms.ModelForm):
    class Meta:
        model = Reservation
        fields = ("subdomain", "token")

    def clean_subdomain(self) -> str:
        name = self.cleaned_data["subdomain"].strip().lower()
        if (problem := name_problem(name)) is not None:
            raise forms.ValidationError(problem)
        return name


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    """Names only one token's tunnels may have (``tokens.reservations``)."""

    form = ReservationForm
    list_display = ("subdomain", "token", "created_at")
    search_fields = ("subdomain", "token__name")
    list_select_related = ("token",)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "token":
            kwargs["queryset"] = Token.objects.filter(revoked=False)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(ApiKey)
class ApiKeyAdmin(IssuedOnceAdmin):
    """Keys for the admin API and /metrics: only the name is entered, the digest never
    shown."""

    list_display = ("name", "prefix", "created_at", "last_used_at", "state")
    list_filter = ("revoked",)
    search_fields = ("name", "prefix")
    actions = ("revoke",)
    issued_template = "admin/tokens/apikey/issued.html"
    _SHOWN = ("prefix", "created_at", "last_used_at", "state")

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        return (
            ("name",) if obj is None else ("name", "prefix", "created_at", "last_used_at", "state")
        )

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        return () if obj is None else self._SHOWN

    def assign_secret(self, obj: ApiKey) -> str:
        return obj.assign_secret()

    @admin.display(description="state")
    def state(self, obj: ApiKey) -> str:
        return "revoked" if obj.revoked else "active"

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset) -> None:
        count = queryset.filter(revoked=False).update(revoked=True)
        self.message_user(
            request, ngettext("Revoked %d API key.", "Revoked %d API keys.", count) % count
        )
