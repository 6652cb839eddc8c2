"""The API key admin: issued with the same shown-once page as tokens, revoked by an
action, the digest never shown."""

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from tokens import crypto
from tokens.models import ApiKey

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:tokens_apikey_add")
CHANGELIST_URL = reverse("admin:tokens_apikey_changelist")


@pytest.fixture
def client(django_user_model, settings):
    """A client logged in as a superuser, talking to the main host."""
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client(HTTP_HOST=settings.LUMINET_TUNNEL_DOMAIN)
    client.force_login(user)
    return client


def shown_key(response) -> str:
    match = re.search(r'<code id="issued-token">([^<]*)</code>', response.content.decode())
    assert match, response.content.decode()
    return html.unescape(match.group(1))


def test_issuing_a_key_redirects_to_a_page_that_shows_it_once(client):
    """The add form's POST redirects; the issued page shows the key; a reload does not,
    and issues no other key."""
    posted = client.post(ADD_URL, {"name": "deploy"})
    assert posted.status_code == 302
    key = ApiKey.objects.get()
    assert posted["Location"] == reverse("admin:tokens_apikey_issued", args=[key.pk])
    page = client.get(posted["Location"])
    plaintext = shown_key(page)
    assert crypto.looks_like_api_key(plaintext)
    assert ApiKey.objects.authenticate(plaintext) == key
    assert "no-store" in page["Cache-Control"]
    again = client.get(posted["Location"])
    assert plaintext not in again.content.decode()
    assert 'id="already-shown"' in again.content.decode()
    assert ApiKey.objects.count() == 1


def test_a_duplicate_key_name_is_refused_in_the_form(client):
    """A name another key has is refused with a message; nothing is issued."""
    ApiKey.objects.issue("deploy")
    response = client.post(ADD_URL, {"name": "deploy"})
    assert response.status_code == 200
    assert "API key with this Name already exists." in response.content.decode()
    assert ApiKey.objects.count() == 1


def test_the_revoke_action_revokes_the_selected_keys(client):
    """The revoke action revokes the selected keys, which then authenticate no more."""
    first, first_plaintext = ApiKey.objects.issue("first")
    kept, kept_plaintext = ApiKey.objects.issue("kept")
    response = client.post(
        CHANGELIST_URL, {"action": "revoke", "_selected_action": [first.pk]}, follow=True
    )
    assert "Revoked 1 API key." in response.content.decode()
    assert ApiKey.objects.authenticate(first_plaintext) is None
    assert ApiKey.objects.authenticate(kept_plaintext) == kept
    content = client.get(CHANGELIST_URL).content.decode()
    assert re.findall(r'<td class="field-state">(\w+)</td>', content) == ["active", "revoked"]


def test_the_digest_is_never_shown(client):
    """Neither the list nor the change form shows a key's digest; the add form asks only
    for the name."""
    key, _ = ApiKey.objects.issue("deploy")
    for url in (CHANGELIST_URL, reverse("admin:tokens_apikey_change", args=[key.pk])):
        content = client.get(url).content.decode()
        assert key.prefix in content
        assert key.digest not in content
    add_form = client.get(ADD_URL).content.decode()
    assert 'name="name"' in add_form
    for field in ("prefix", "digest", "revoked"):
        assert f'name="{field}"' not in add_form
