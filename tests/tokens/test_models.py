"""The Token model and its manager."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from tokens import crypto
from tokens.models import Token

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)


def test_issue_returns_the_saved_token_and_a_plaintext_that_matches_it():
    """issue() saves a token whose digest and prefix come from the returned plaintext."""
    token, plaintext = Token.objects.issue("laptop")
    assert crypto.looks_like_token(plaintext)
    saved = Token.objects.get(pk=token.pk)
    assert saved.digest == crypto.digest(plaintext)
    assert saved.prefix == plaintext[:8]
    assert saved.name == "laptop"
    assert saved.revoked is False
    assert saved.last_used_at is None
    assert saved.expires_at is None


def test_the_plaintext_is_not_stored_anywhere_in_the_row():
    """No column of the row holds the plaintext or its secret part."""
    token, plaintext = Token.objects.issue("laptop")
    row = Token.objects.filter(pk=token.pk).values().get()
    for value in row.values():
        assert plaintext not in str(value)
        assert plaintext[8:] not in str(value)


def test_str_shows_the_name_and_prefix_but_not_the_secret():
    """str(token) names the token by name and prefix only."""
    token, plaintext = Token.objects.issue("laptop")
    assert "laptop" in str(token)
    assert token.prefix in str(token)
    assert plaintext not in str(token)


def usable(token: Token, now: datetime | None = None) -> bool:
    """Whether the manager's usable() (what authentication asks) includes ``token``."""
    return Token.objects.usable(now or timezone.now()).filter(pk=token.pk).exists()


def test_a_new_token_is_active():
    """A token without expiry that is not revoked is active and usable."""
    token, _ = Token.objects.issue("laptop")
    assert token.state == "active"
    assert usable(token)


def test_a_token_expires_at_its_expiry_time():
    """A token is active before expires_at and expired from then on."""
    token, _ = Token.objects.issue("laptop", expires_at=T0)
    assert token.state_at(T0 - timedelta(seconds=1)) == "active"
    assert usable(token, T0 - timedelta(seconds=1))
    assert token.state_at(T0) == "expired"
    assert not usable(token, T0)


def test_a_revoked_token_is_revoked_even_after_expiry():
    """Revocation takes precedence over expiry in the reported state."""
    token, _ = Token.objects.issue("laptop", expires_at=T0)
    Token.objects.filter(pk=token.pk).revoke()
    token.refresh_from_db()
    assert token.state_at(T0 + timedelta(days=1)) == "revoked"
    assert not usable(token, T0 - timedelta(days=1))


def test_revoke_counts_only_tokens_it_revoked():
    """Revoking an already revoked token is not counted again."""
    Token.objects.issue("a")
    Token.objects.issue("b")
    assert Token.objects.filter(name="a").revoke() == 1
    assert Token.objects.revoke() == 1
    assert Token.objects.revoke() == 0


def test_a_saved_token_cannot_be_given_a_new_secret():
    """assign_secret() refuses a saved token, so a digest is never silently replaced."""
    token, _ = Token.objects.issue("laptop")
    with pytest.raises(ValueError):
        token.assign_secret()
