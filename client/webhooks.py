"""Webhook signature rules as a client states them: ``--verify-webhook SPEC``.

The client only parses, describes and sends a rule; the server checks requests
against it (``tunnels.edge.webhooks``). Both sides parse the one syntax here. A
spec is ``PROVIDER:[OPTION:]SECRET``; the secret comes last and is used as the
HMAC-SHA256 key, as UTF-8 bytes, exactly as given:

``github:SECRET``
    ``X-Hub-Signature-256: sha256=<hex>``. Everything after ``github:`` is the
    secret, colons included (GitHub lets a person type any secret).
``stripe:[SECONDS:]SECRET``
    ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]``; the signing secret
    as Stripe shows it (``whsec_...``, prefix included). A request whose ``t`` is
    more than SECONDS (default 300) from now, either way, is refused.
``slack:[SECONDS:]SECRET``
    ``X-Slack-Signature: v0=<hex>`` and ``X-Slack-Request-Timestamp``, with the
    same tolerance (default 300 s, as Slack recommends).
``hmac:[HEADER:]SECRET``
    An HMAC-SHA256 of the body in HEADER (default ``X-Signature``), written as
    hex, ``sha256=<hex>`` or base64. A generic secret that contains a colon needs
    its header named, e.g. ``hmac:X-Signature:se:cret``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PROVIDERS = ("github", "stripe", "slack", "hmac")
#: Seconds a Stripe or Slack timestamp may be from now: both providers' default.
DEFAULT_TOLERANCE = 300
#: A longer window would no longer guard against replays; a typo such as
#: ``stripe:3000000:...`` is refused rather than honoured.
MAX_TOLERANCE = 24 * 3600
GENERIC_HEADER = "X-Signature"
GITHUB_HEADER = "X-Hub-Signature-256"
STRIPE_HEADER = "Stripe-Signature"
SLACK_HEADER = "X-Slack-Signature"
SLACK_TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"

# RFC 9110 section 5.6.2: a header name is a token.
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SECONDS_RE = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class WebhookSpec:
    """One provider's signature rule: who signs, with which secret, in which header."""

    provider: str
    #: Kept out of ``repr`` so that a rule printed or logged never shows it.
    secret: str = field(repr=False)
    #: The header holding the signature.
    header: str
    #: Seconds a signed timestamp may be from now (Stripe and Slack), else None.
    tolerance: int | None = None

    def describe(self) -> str:
        """What may be shown about the rule: never its secret."""
        return f"webhook {self.provider}"

    def text(self) -> str:
        """The spec as :func:`parse_spec` reads it back: what travels to the server."""
        if self.provider == "github":
            return f"github:{self.secret}"
        if self.provider == "hmac":
            return f"hmac:{self.header}:{self.secret}"
        return f"{self.provider}:{self.tolerance}:{self.secret}"


def parse_spec(text: str) -> WebhookSpec:
    """Read ``PROVIDER:[OPTION:]SECRET``; raises ValueError saying what is wrong.

    The messages never repeat the secret.
    """
    provider, colon, rest = text.partition(":")
    provider = provider.strip().lower()
    if provider not in PROVIDERS:
        known = ", ".join(PROVIDERS)
        raise ValueError(f"unknown webhook provider {provider!r} (known: {known})")
    if not colon:
        raise ValueError(f"a {provider} webhook needs a secret: {provider}:SECRET")
    if provider == "github":
        return WebhookSpec("github", _secret(provider, rest), GITHUB_HEADER)
    option, colon, secret = rest.partition(":")
    if not colon:
        option, secret = "", rest
    if provider == "hmac":
        header = option or GENERIC_HEADER
        if not _TOKEN_RE.fullmatch(header):
            # Not repeated in the message: it may be the start of a secret with a colon.
            raise ValueError("hmac webhook: the part before the secret is not a header name")
        return WebhookSpec("hmac", _secret(provider, secret), header)
    header = STRIPE_HEADER if provider == "stripe" else SLACK_HEADER
    return WebhookSpec(provider, _secret(provider, secret), header, _tolerance(provider, option))


def _secret(provider: str, secret: str) -> str:
    if not secret:
        raise ValueError(f"a {provider} webhook needs a secret: the part after the last colon")
    if any(ord(char) < 32 or ord(char) == 127 for char in secret):
        raise ValueError(f"the {provider} webhook secret contains a control character")
    return secret


def _tolerance(provider: str, option: str) -> int:
    if not option:
        return DEFAULT_TOLERANCE
    if not _SECONDS_RE.fullmatch(option):
        # Not repeated in the message: it may be the start of a secret with a colon.
        raise ValueError(
            f"{provider} webhook: the part before the secret must be a tolerance "
            f"in whole seconds ({provider}:SECONDS:SECRET)"
        )
    seconds = int(option)
    if not 1 <= seconds <= MAX_TOLERANCE:
        raise ValueError(
            f"{provider} webhook: tolerance must be 1 to {MAX_TOLERANCE} seconds, not {seconds}"
        )
    return seconds
