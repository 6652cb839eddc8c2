"""Access tokens, stored as SHA-256 digests; the plaintext exists only when issued."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import ClassVar

from django.db import models
from django.db.models import Q
from django.utils import timezone

from tokens import crypto

logger = logging.getLogger(__name__)


def _now() -> datetime:
    """Return the current time; the one clock of this app, a seam for tests."""
    return timezone.now()


class TokenQuerySet(models.QuerySet["Token"]):
    def usable(self, now: datetime) -> TokenQuerySet:
        """Keep the tokens that are neither revoked nor expired at ``now``."""
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked=False)

    def revoke(self) -> int:
        """Revoke these tokens and return how many were not revoked before."""
        count = self.filter(revoked=False).update(revoked=True)
        if count:
            logger.info("revoked %d token(s)", count)
        return count


class TokenManager(models.Manager.from_queryset(TokenQuerySet)):  # type: ignore[misc]
    def issue(self, name: str, expires_at: datetime | None = None) -> tuple[Token, str]:
        """Create a token and return it with its plaintext, which is not stored anywhere."""
        token = self.model(name=name, expires_at=expires_at)
        plaintext = token.assign_secret()
        token.save(using=self._db)
        logger.info("issued token %s (%s)", token.name, token.prefix)
        return token, plaintext


class Token(models.Model):
    name = models.CharField(max_length=100, help_text="Who or what uses this token.")
    prefix = models.CharField(
        max_length=12, editable=False, help_text="The first characters of the token."
    )
    digest = models.CharField(max_length=64, unique=True, db_index=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(default=False, editable=False)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Leave empty for a token that never expires."
    )

    objects = TokenManager()

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def assign_secret(self) -> str:
        """Give this unsaved token a new secret; return the plaintext, keep the digest."""
        if self.pk is not None:
            raise ValueError("a saved token keeps its secret; issue a new token instead")
        plaintext = crypto.generate_token()
        self.prefix = crypto.display_prefix(plaintext)
        self.digest = crypto.digest(plaintext)
        return plaintext

    def state_at(self, now: datetime) -> str:
        """Return "revoked", "expired" or "active" as of ``now``."""
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    @property
    def state(self) -> str:
        return self.state_at(_now())
