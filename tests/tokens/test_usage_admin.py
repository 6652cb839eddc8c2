"""Usage in the admin: a read-only table on each token's page, and a list by token and day."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tokens.models import DailyUsage, Token
from tunnels.usage import Counts, write_counts

pytestmark = pytest.mark.django_db

USAGE_LIST = reverse("admin:tokens_dailyusage_changelist")


@pytest.fixture
def client(django_user_model, settings):
    """A client logged in as a superuser, talking to the main host."""
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client(HTTP_HOST=settings.LUMINET_TUNNEL_DOMAIN)
    client.force_login(user)
    return client


def test_flushed_counts_add_to_the_days_row() -> None:
    token, _ = Token.objects.issue("laptop")
    day = timezone.now().date()
    write_counts(token.id, day, Counts(requests=2, bytes_in=10, bytes_out=20, refusals=1))
    write_counts(token.id, day, Counts(requests=1, bytes_in=5))
    row = DailyUsage.objects.get(token=token, day=day)
    assert (row.requests, row.bytes_in, row.bytes_out, row.refusals) == (3, 15, 20, 1)


def test_the_tokens_page_shows_its_recent_usage_read_only(client) -> None:
    token, _ = Token.objects.issue("laptop")
    today = timezone.now().date()
    DailyUsage.objects.create(token=token, day=today, requests=4242, bytes_in=777001)
    DailyUsage.objects.create(token=token, day=today - timedelta(days=90), requests=9191)
    page = client.get(reverse("admin:tokens_token_change", args=[token.pk])).content.decode()
    assert "4242" in page and "777001" in page
    assert "9191" not in page  # older than the table's days: in the usage list
    assert 'name="usage-0-requests"' not in page  # shown, not editable


def test_the_usage_list_filters_by_token(client) -> None:
    laptop, _ = Token.objects.issue("laptop")
    ci, _ = Token.objects.issue("ci")
    today = timezone.now().date()
    DailyUsage.objects.create(token=laptop, day=today, requests=1111)
    DailyUsage.objects.create(token=ci, day=today, requests=2222)
    everything = client.get(USAGE_LIST).content.decode()
    assert "1111" in everything and "2222" in everything
    only_ci = client.get(USAGE_LIST, {"token__id__exact": ci.pk}).content.decode()
    assert "2222" in only_ci and "1111" not in only_ci
    assert client.get(reverse("admin:tokens_dailyusage_add")).status_code == 403
