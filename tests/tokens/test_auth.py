"""Authenticating tunnel clients by token."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from tokens import crypto
from tokens.auth import AuthenticatedToken, authenticate, is_still_valid
from tokens.models import Token

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)

authenticate_sync = async_to_sync(authenticate)
is_still_valid_sync = async_to_sync(is_still_valid)


def test_an_issued_token_authenticates():
    """The plaintext returned by issue() authenticates as that token."""
    token, plaintext = Token.objects.issue("laptop")
    assert authenticate_sync(plaintext) == AuthenticatedToken(
        id=token.pk, name="laptop", prefix=token.prefix
    )


def test_authenticate_records_last_used_at():
    """A successful authentication sets last_used_at to the time it happened."""
    token, plaintext = Token.objects.issue("laptop")
    authenticate_sync(plaintext, now=T0)
    token.refresh_from_db()
    assert token.last_used_at == T0


def test_authenticate_uses_one_lookup_and_one_update(django_assert_num_queries):
    """Authentication is one indexed SELECT and one UPDATE, not a full save."""
    _, plaintext = Token.objects.issue("laptop")
    with django_assert_num_queries(2) as queries:
        authenticate_sync(plaintext)
    select, update = (q["sql"] for q in queries.captured_queries)
    assert select.startswith("SELECT")
    assert update.startswith("UPDATE")
    assert "last_used_at" in update
    assert "name" not in update.split("WHERE")[0]


def test_a_revoked_token_does_not_authenticate():
    """A revoked token does not authenticate and its last use is not recorded."""
    token, plaintext = Token.objects.issue("laptop")
    Token.objects.filter(pk=token.pk).revoke()
    assert authenticate_sync(plaintext) is None
    token.refresh_from_db()
    assert token.last_used_at is None


def test_an_expired_token_does_not_authenticate():
    """A token authenticates before its expiry time and not from then on."""
    _, plaintext = Token.objects.issue("laptop", expires_at=T0)
    assert authenticate_sync(plaintext, now=T0 - timedelta(seconds=1)) is not None
    assert authenticate_sync(plaintext, now=T0) is None
    assert authenticate_sync(plaintext, now=T0 + timedelta(days=1)) is None


def test_a_token_past_its_expiry_does_not_authenticate_with_the_real_clock():
    """Without an explicit time, authenticate() uses the current time."""
    _, plaintext = Token.objects.issue("laptop", expires_at=timezone.now() - timedelta(seconds=1))
    assert authenticate_sync(plaintext) is None


def test_an_unknown_token_does_not_authenticate():
    """A well-formed token that was never issued does not authenticate."""
    Token.objects.issue("laptop")
    assert authenticate_sync(crypto.generate_token()) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "lmn_",
        "not a token",
        "lmn_" + "a" * 39,
        "lmn_" + "a" * 41,
        "lmn_" + "-" * 40,
        "x" * 10_000,
    ],
)
def test_garbage_is_rejected_without_a_query(value, django_assert_num_queries):
    """Values that do not look like a token fail without touching the database."""
    with django_assert_num_queries(0):
        assert authenticate_sync(value) is None


def test_a_non_string_is_rejected():
    """A non-string value fails like any other bad token."""
    assert authenticate_sync(None) is None  # type: ignore[arg-type]


def test_an_active_token_is_still_valid():
    """is_still_valid() is true for an active token."""
    token, _ = Token.objects.issue("laptop")
    assert is_still_valid_sync(token.pk) is True


def test_a_revoked_token_is_no_longer_valid():
    """is_still_valid() turns false once the token is revoked."""
    token, _ = Token.objects.issue("laptop")
    Token.objects.filter(pk=token.pk).revoke()
    assert is_still_valid_sync(token.pk) is False


def test_an_expired_token_is_no_longer_valid():
    """is_still_valid() turns false at the token's expiry time."""
    token, _ = Token.objects.issue("laptop", expires_at=T0)
    assert is_still_valid_sync(token.pk, now=T0 - timedelta(seconds=1)) is True
    assert is_still_valid_sync(token.pk, now=T0) is False


def test_a_deleted_token_is_no_longer_valid():
    """is_still_valid() is false for a token that no longer exists."""
    token, _ = Token.objects.issue("laptop")
    token_id = token.pk
    token.delete()
    assert is_still_valid_sync(token_id) is False
