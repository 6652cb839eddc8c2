"""Issuing a secret in the admin with POST/redirect/GET, its plaintext shown exactly once.

The add form's POST creates the token (or API key) and redirects to its "issued" page,
which shows the plaintext the one time it is ever shown. Where the plaintext waits
between the two requests is the choice here:

- on the POST's own response (what the admin did before): reloading that page posts
  the form again and issues a second token;
- in the redirect's URL: it would stay in the browser's history, the proxy's and
  server's access logs and any ``Referer``;
- in a message: Django's default message storage is a cookie, so the plaintext would
  sit in the browser;
- in the session, under a one-time key that the issued page pops (this module): the
  session lives in the database, server-side, and the GET that shows the plaintext
  deletes it from there. A reload then finds nothing and says the token was shown
  once; nothing is issued again.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.text import capfirst

logger = logging.getLogger(__name__)

#: Session keys of plaintexts waiting for their issued page; each is popped by it.
SESSION_KEY = "luminet.issued.{label}.{pk}"


def session_key(obj: models.Model) -> str:
    return SESSION_KEY.format(label=obj._meta.label_lower, pk=obj.pk)


class IssuedOnceAdmin(admin.ModelAdmin):
    """An admin whose add form issues a secret and redirects to a page that shows it once.

    Subclasses give ``assign_secret`` (set the digest and prefix on the unsaved object,
    return the plaintext), ``issued_template`` and ``issued_context``.
    """

    issued_template: str

    def assign_secret(self, obj: Any) -> str:
        raise NotImplementedError

    def issued_context(self, request: HttpRequest, obj: Any, plaintext: str) -> dict[str, Any]:
        """What the issued page shows besides the plaintext (commands that use it)."""
        return {}

    @property
    def issued_url_name(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_issued"

    def get_urls(self) -> list[URLPattern]:
        issued = path(
            "<path:object_id>/issued/",
            self.admin_site.admin_view(self.issued_view),
            name=self.issued_url_name,
        )
        return [issued, *super().get_urls()]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        # The add form always leads to the issued page, so it offers only "Save".
        extra_context = {
            **(extra_context or {}),
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
        }
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Any, form, change: bool) -> None:
        plaintext = None if change else self.assign_secret(obj)
        super().save_model(request, obj, form, change)
        if plaintext is not None:
            request.session[session_key(obj)] = plaintext
            logger.info(
                "issued %s %s (%s) in the admin, by %s",
                self.opts.verbose_name,
                obj.name,
                obj.prefix,
                request.user.get_username(),
            )

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse(f"admin:{self.issued_url_name}", args=[obj.pk]))

    def issued_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The plaintext, popped from the session: shown by the first GET, never again."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with id {object_id!r}.")
        plaintext = request.session.pop(session_key(obj), None)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{capfirst(self.opts.verbose_name)} issued",
            "opts": self.opts,
            "object": obj,
            "plaintext": plaintext,
            **(self.issued_context(request, obj, plaintext) if plaintext else {}),
        }
        response = TemplateResponse(request, self.issued_template, context)
        # Never kept by the browser or a proxy: the page holds a secret.
        add_never_cache_headers(response)
        return response
