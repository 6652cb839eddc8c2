"""Admin for usage per token and day (``DailyUsage``): read only, since the server writes
it (``tunnels.usage``); a table on each token's page and a list filterable by token and
day."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tokens.models import DailyUsage, _now

#: Days of usage on a token's page; the usage list has them all.
INLINE_DAYS = 31


class ReadOnly:
    """Rows the server writes: the admin shows them and changes nothing."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


USAGE_FIELDS = ("day", "requests", "bytes_in", "bytes_out", "refusals")


class DailyUsageInline(ReadOnly, admin.TabularInline):
    model = DailyUsage
    fields = USAGE_FIELDS
    readonly_fields = USAGE_FIELDS
    extra = 0
    verbose_name_plural = f"Usage, last {INLINE_DAYS} days (UTC; written every flush interval)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[DailyUsage]:
        since = _now().date() - timedelta(days=INLINE_DAYS - 1)
        return super().get_queryset(request).filter(day__gte=since)


@admin.register(DailyUsage)
class DailyUsageAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("day", "token", "requests", "bytes_in", "bytes_out", "refusals")
    list_filter = (("token", admin.RelatedOnlyFieldListFilter), "day")
    date_hierarchy = "day"
    list_select_related = ("token",)
    search_fields = ("token__name", "token__prefix")
