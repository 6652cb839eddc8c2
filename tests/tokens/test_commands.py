"""The issue_token and revoke_token management commands."""

from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.utils import timezone

from tokens.auth import authenticate
from tokens.models import Token

pytestmark = pytest.mark.django_db


def issue(*args: str) -> list[str]:
    out = StringIO()
    call_command("issue_token", *args, stdout=out)
    return out.getvalue().splitlines()


def revoke(*args: str) -> list[str]:
    out = StringIO()
    call_command("revoke_token", *args, stdout=out)
    return out.getvalue().splitlines()


def test_issue_token_prints_a_working_token_alone_on_the_last_line():
    """The last line of issue_token's output is the token, and it authenticates."""
    lines = issue("--name", "laptop")
    token = async_to_sync(authenticate)(lines[-1])
    assert token is not None
    assert token.name == "laptop"
    assert lines[-1] == lines[-1].strip()


def test_issue_token_prints_the_plaintext_only_once():
    """Only the last line contains the plaintext; the others show at most its prefix."""
    lines = issue("--name", "laptop")
    assert not any(lines[-1][8:] in line for line in lines[:-1])
    assert any(lines[-1][:8] in line for line in lines[:-1])


def test_issue_token_sets_the_expiry():
    """--expires-in-days sets expires_at that many days from now."""
    issue("--name", "laptop", "--expires-in-days", "7")
    delay = Token.objects.get().expires_at - timezone.now()
    assert timedelta(days=7) - timedelta(minutes=1) < delay <= timedelta(days=7)


def test_issue_token_without_expiry_never_expires():
    """Without --expires-in-days the token has no expiry."""
    issue("--name", "laptop")
    assert Token.objects.get().expires_at is None


@pytest.mark.parametrize("name", ["", "   "])
def test_issue_token_refuses_an_empty_name(name):
    """An empty --name is a clear error and creates no token."""
    with pytest.raises(CommandError, match="--name must not be empty"):
        issue("--name", name)
    assert not Token.objects.exists()


def test_issue_token_requires_a_name():
    """Leaving out --name is an error."""
    with pytest.raises(CommandError, match="--name"):
        issue()


def test_issue_token_refuses_a_name_that_is_too_long():
    """A name longer than the column is a clear error."""
    with pytest.raises(CommandError, match="at most 100"):
        issue("--name", "x" * 101)


@pytest.mark.parametrize("days", ["0", "-1", "100000"])
def test_issue_token_refuses_an_unreasonable_expiry(days):
    """--expires-in-days must be a positive number of days within a century."""
    with pytest.raises(CommandError, match="--expires-in-days"):
        issue("--name", "laptop", "--expires-in-days", days)
    assert not Token.objects.exists()


def test_revoke_token_revokes_by_name():
    """revoke_token NAME revokes the token with that exact name."""
    Token.objects.issue("laptop")
    other, _ = Token.objects.issue("laptop2")
    lines = revoke("laptop")
    assert lines[-1] == "1 token(s) revoked."
    assert Token.objects.filter(revoked=True).count() == 1
    other.refresh_from_db()
    assert not other.revoked


def test_a_name_in_use_is_refused_and_free_again_once_revoked():
    Token.objects.issue("laptop")
    with pytest.raises(CommandError, match="a token named 'laptop' is in use: revoke it first"):
        call_command("issue_token", "--name", "laptop", stdout=StringIO())
    revoke("laptop")
    Token.objects.issue("laptop")  # a revoked token's name may be used again
    assert Token.objects.filter(name="laptop").count() == 2


def test_revoke_token_revokes_by_prefix():
    """revoke_token PREFIX revokes the token with that display prefix."""
    token, plaintext = Token.objects.issue("laptop")
    revoke(token.prefix)
    assert async_to_sync(authenticate)(plaintext) is None


def test_revoke_token_accepts_a_whole_token_without_echoing_it():
    """A pasted whole token is revoked, and the output shows only its prefix."""
    token, plaintext = Token.objects.issue("laptop")
    lines = revoke(plaintext)
    token.refresh_from_db()
    assert token.revoked
    assert not any(plaintext[8:] in line for line in lines)


def test_revoke_token_fails_when_nothing_matches():
    """revoke_token with no matching prefix or name is an error."""
    Token.objects.issue("laptop")
    with pytest.raises(CommandError, match="No token has the prefix or name 'desktop'"):
        revoke("desktop")
    assert not Token.objects.filter(revoked=True).exists()


def test_revoke_token_on_a_revoked_token_succeeds_and_revokes_nothing_new():
    """Revoking twice is not an error and reports zero new revocations."""
    Token.objects.issue("laptop")
    revoke("laptop")
    lines = revoke("laptop")
    assert lines[-1] == "0 token(s) revoked."
    assert lines[0].startswith("Already revoked:")
