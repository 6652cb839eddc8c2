"""The token admin: issuing shows the plaintext once, the list, revocation."""

import html
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from tokens import crypto
from tokens.models import Token

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:tokens_token_add")
CHANGELIST_URL = reverse("admin:tokens_token_changelist")


@pytest.fixture
def client(django_user_model, settings):
    """A client logged in as a superuser, talking to the main host."""
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client(HTTP_HOST=settings.LUMINET_TUNNEL_DOMAIN)
    client.force_login(user)
    return client


def add_token(client, name="laptop", **data):
    """Post the add form and follow its redirect to the issued page."""
    response = client.post(ADD_URL, {"name": name, "expires_at_0": "", "expires_at_1": "", **data})
    assert response.status_code == 302, response.content.decode()
    return response, client.get(response["Location"])


def shown(response, element_id: str) -> str:
    match = re.search(rf'<code id="{element_id}">([^<]*)</code>', response.content.decode())
    assert match, response.content.decode()
    return html.unescape(match.group(1))


def shown_plaintext(response) -> str:
    return shown(response, "issued-token")


def test_adding_a_token_redirects_to_a_page_that_shows_its_plaintext_once(client):
    """The add form's POST redirects; the page it leads to shows the new token's plaintext:
    once alone, and in the two commands that run the client, and nowhere else."""
    posted, page = add_token(client)
    token = Token.objects.get()
    assert posted["Location"] == reverse("admin:tokens_token_issued", args=[token.pk])
    assert page.status_code == 200
    plaintext = shown_plaintext(page)
    assert crypto.digest(plaintext) == token.digest
    assert page.content.decode().count(plaintext) == 3
    assert plaintext in shown(page, "run-command")
    assert plaintext in shown(page, "module-command")
    assert "will not be shown again" in page.content.decode()
    assert "no-store" in page["Cache-Control"]


def test_reloading_the_issued_page_issues_nothing_and_shows_no_plaintext(client):
    """A second GET of the issued page creates no token and shows the plaintext no more."""
    _, page = add_token(client)
    plaintext = shown_plaintext(page)
    count = Token.objects.count()
    again = client.get(page.wsgi_request.path)
    assert again.status_code == 200
    assert Token.objects.count() == count == 1
    assert plaintext not in again.content.decode()
    assert 'id="issued-token"' not in again.content.decode()
    assert 'id="already-shown"' in again.content.decode()


def test_a_duplicate_name_is_refused_in_the_form(client):
    """A name that an unrevoked token has is refused with a message; nothing is issued."""
    Token.objects.issue("laptop")
    response = client.post(ADD_URL, {"name": "laptop", "expires_at_0": "", "expires_at_1": ""})
    assert response.status_code == 200
    assert "A token with this name is in use: revoke it first" in response.content.decode()
    assert Token.objects.count() == 1


def test_a_revoked_tokens_name_can_be_used_again(client):
    """Once its token is revoked, a name is free for a new one."""
    old, _ = Token.objects.issue("laptop")
    Token.objects.filter(pk=old.pk).revoke()
    _, page = add_token(client)
    assert crypto.digest(shown_plaintext(page)) == Token.objects.get(revoked=False).digest


def test_the_issued_page_shows_the_commands_with_the_token_filled_in(client, settings):
    """Below the new token: download the client and run it, or run it as a module, with
    this server's URL and the token in TUNNEL_TOKEN."""
    _, page = add_token(client)
    plaintext = shown_plaintext(page)
    base = settings.LUMINET_PUBLIC_URL
    assert shown(page, "download-command") == f"curl -fsSO {base}/luminet.pyz"
    assert shown(page, "run-command") == (
        f"TUNNEL_TOKEN={plaintext} python3 luminet.pyz http 3000 --server {base}"
    )
    assert shown(page, "module-command") == (
        f"TUNNEL_TOKEN={plaintext} python -m client --server {base} --port 3000"
    )


def test_the_add_form_asks_only_for_name_and_expiry(client):
    """The add form has inputs for the name and expiry and nothing else of the token."""
    content = client.get(ADD_URL).content.decode()
    assert 'name="_addanother"' not in content
    assert 'name="_continue"' not in content
    assert 'name="name"' in content
    assert 'name="expires_at_0"' in content
    for field in ("prefix", "digest", "revoked", "last_used_at"):
        assert f'name="{field}"' not in content


def test_a_token_added_with_an_expiry_keeps_it(client):
    """An expiry entered in the add form is saved on the token."""
    add_token(client, expires_at_0="2030-01-02", expires_at_1="03:04:05")
    assert Token.objects.get().expires_at.isoformat() == "2030-01-02T03:04:05+00:00"


def test_the_plaintext_is_not_kept_in_cookies_session_messages_or_urls(client):
    """After the issued page, the plaintext is nowhere but in the body of that one page."""
    posted, response = add_token(client)
    plaintext = shown_plaintext(response)
    secret = plaintext[8:]
    for each in (posted, response):
        assert all(secret not in value for _, value in each.items())
    cookies = [*response.cookies.values(), *client.cookies.values()]
    assert all(secret not in morsel.OutputString() for morsel in cookies)
    assert [str(m) for m in get_messages(response.wsgi_request)] == []
    for session in Session.objects.all():
        assert secret not in session.session_data
        assert secret not in repr(session.get_decoded())
    for entry in LogEntry.objects.all():
        assert secret not in f"{entry.object_repr} {entry.change_message}"
    for url in (
        CHANGELIST_URL,
        reverse("admin:tokens_token_change", args=[Token.objects.get().pk]),
    ):
        assert secret not in client.get(url).content.decode()


def test_the_changelist_shows_prefix_and_state(client):
    """The list shows each token's prefix and whether it is active, revoked or expired."""
    active, _ = Token.objects.issue("active one")
    revoked, _ = Token.objects.issue("revoked one")
    Token.objects.filter(pk=revoked.pk).revoke()
    content = client.get(CHANGELIST_URL).content.decode()
    assert active.prefix in content
    assert revoked.prefix in content
    assert re.findall(r'<td class="field-state">(\w+)</td>', content) == ["revoked", "active"]


def test_the_change_form_edits_only_the_name_and_never_shows_the_digest(client):
    """The change form has an input for the name only and does not show the digest."""
    token, _ = Token.objects.issue("laptop")
    content = client.get(reverse("admin:tokens_token_change", args=[token.pk])).content.decode()
    assert 'name="name"' in content
    assert token.prefix in content
    assert token.digest not in content
    for field in ("expires_at_0", "prefix", "revoked", "digest"):
        assert f'name="{field}"' not in content


def test_the_revoke_action_revokes_the_selected_tokens(client):
    """The revoke action revokes the selected tokens only and says how many."""
    first, _ = Token.objects.issue("first")
    second, _ = Token.objects.issue("second")
    kept, _ = Token.objects.issue("kept")
    response = client.post(
        CHANGELIST_URL,
        {"action": "revoke", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 2 tokens." in response.content.decode()
    assert set(Token.objects.filter(revoked=True).values_list("pk", flat=True)) == {
        first.pk,
        second.pk,
    }
    kept.refresh_from_db()
    assert kept.state == "active"


def test_a_token_can_be_deleted(client):
    """Deleting a token from the admin removes it."""
    token, _ = Token.objects.issue("laptop")
    url = reverse("admin:tokens_token_delete", args=[token.pk])
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Token.objects.exists()
