"""Access tokens, stored as SHA-256 digests; the plaintext exists only when issued."""

from __future__ import annotations

import ipaddress
import logging
from datetime import datetime
from typing import ClassVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
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


class DuplicateName(Exception):
    """A token that is not revoked already has this name."""


class TokenManager(models.Manager.from_queryset(TokenQuerySet)):  # type: ignore[misc]
    def issue(self, name: str, expires_at: datetime | None = None) -> tuple[Token, str]:
        """Create a token and return it with its plaintext, which is not stored anywhere.

        Raises DuplicateName when a token that is not revoked has ``name``.
        """
        token = self.model(name=name, expires_at=expires_at)
        plaintext = token.assign_secret()
        try:
            with transaction.atomic(using=self._db):
                token.save(using=self._db)
        except IntegrityError as exc:
            if self.filter(name=name, revoked=False).exists():
                raise DuplicateName(
                    f"a token named {name!r} is in use: revoke it first, or choose another name"
                ) from exc
            raise
        logger.info("issued token %s (%s)", token.name, token.prefix)
        return token, plaintext


def parse_cidrs(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """CIDRs separated by commas, spaces or lines (``203.0.113.0/24, 2001:db8::/32``);
    a bare address is its own /32 or /128. Raises ValueError naming a bad entry."""
    networks = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP network (e.g. 203.0.113.0/24)") from exc
    return networks


def validate_cidrs(text: str) -> None:
    try:
        parse_cidrs(text)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


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
    allowed_cidrs = models.TextField(
        blank=True,
        validators=[validate_cidrs],
        help_text="Only callers from these networks reach this token's tunnels "
        "(e.g. 203.0.113.0/24, 2001:db8::/32); empty: anyone.",
    )
    rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per minute per tunnel of this token; empty: the server's "
        "LUMINET_TUNNEL_RATE_LIMIT; 0: no limit.",
    )

    objects = TokenManager()

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at", "-id"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            # Tokens are revoked and looked up by name: one usable token per name.
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(revoked=False),
                name="unique_unrevoked_token_name",
                violation_error_message="A token with this name is in use: revoke it first, "
                "or choose another name.",
            )
        ]

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


class ApiKeyManager(models.Manager["ApiKey"]):
    def issue(self, name: str) -> tuple[ApiKey, str]:
        """Create a key and return it with its plaintext, which is not stored anywhere.

        Raises DuplicateName when a key has ``name``.
        """
        key = self.model(name=name)
        plaintext = key.assign_secret()
        try:
            with transaction.atomic(using=self._db):
                key.save(using=self._db)
        except IntegrityError as exc:
            if self.filter(name=name).exists():
                raise DuplicateName(f"an API key named {name!r} exists") from exc
            raise
        logger.info("issued API key %s (%s)", key.name, key.prefix)
        return key, plaintext

    def authenticate(self, plaintext: str) -> ApiKey | None:
        """The unrevoked key matching ``plaintext``, its use recorded; None for any failure."""
        if not crypto.looks_like_api_key(plaintext):
            return None
        key = self.filter(digest=crypto.digest(plaintext), revoked=False).first()
        if key is not None:
            now = _now()
            # One write a minute at most, not one per API call.
            if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
                self.filter(pk=key.pk).update(last_used_at=now)
        return key


class ApiKey(models.Model):
    """A key for the admin API (``/api/``) and the metrics; never a tunnel token.
    Stored as a SHA-256 digest like tokens; the plaintext is shown once."""

    name = models.CharField(max_length=100, unique=True, help_text="Who or what uses this key.")
    prefix = models.CharField(max_length=12, editable=False)
    digest = models.CharField(max_length=64, unique=True, db_index=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(default=False, editable=False)

    objects = ApiKeyManager()

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def assign_secret(self) -> str:
        """Give this unsaved key a new secret; return the plaintext, keep the digest."""
        if self.pk is not None:
            raise ValueError("a saved key keeps its secret; issue a new key instead")
        plaintext = crypto.generate_token(crypto.API_KEY_PREFIX)
        self.prefix = crypto.display_prefix(plaintext)
        self.digest = crypto.digest(plaintext)
        return plaintext


class Reservation(models.Model):
    """A subdomain only one token may have."""

    subdomain = models.CharField(max_length=63, unique=True)
    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="reservations")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["subdomain"]

    def __str__(self) -> str:
        return self.subdomain


class DailyUsage(models.Model):
    """What one token's tunnels carried in one day (UTC), flushed from counters in
    memory or Redis, never written per request."""

    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    requests = models.PositiveBigIntegerField(default=0)
    bytes_in = models.PositiveBigIntegerField(default=0)
    bytes_out = models.PositiveBigIntegerField(default=0)
    refusals = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering: ClassVar[list[str]] = ["-day", "token"]
        verbose_name_plural = "daily usage"
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["token", "day"], name="one_usage_row_per_token_day")
        ]
