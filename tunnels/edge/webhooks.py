"""Webhook signatures checked at the edge: pure, no I/O.

A tunnel with webhook rules (``--verify-webhook``; syntax in ``client.webhooks``)
lets a request through only once its body matches a provider's signature. The
check is a small state machine the edge drives: :func:`open_check` reads the
request's headers and refuses at once when they cannot pass (a missing or
malformed signature header, a stale timestamp, a declared length over the cap),
so no body is read for those; :meth:`WebhookCheck.update` hashes each part of the
body as it arrives and refuses past the cap (413); :meth:`WebhookCheck.finish`
compares in constant time. Stripe and Slack sign ``timestamp + separator + body``:
the prefix is fed to the HMAC first, so the body is never copied to be signed.

With several rules, a request passes if it satisfies any one of them: one tunnel
can take GitHub and Stripe deliveries, or two GitHub secrets during a rotation.

Caps, the most the edge holds of a body while it is checked (the body must be
held: nothing reaches the tunnel before it is verified):

- GitHub: 25 MB, its documented payload cap ("Payloads are capped at 25 MB",
  GitHub's *Webhook events and payloads*).
- Stripe: 1 MiB. Stripe documents no limit; an event carries one API object
  whose lists are truncated (``has_more``), a few kilobytes in practice.
- Slack: 4 MiB. Slack documents no limit; its own receivers (Bolt for
  JavaScript 5.1) refuse bodies over 4 MB before verifying them.
- generic ``hmac``: ``LUMINET_WEBHOOK_MAX_BYTES`` (1 MiB by default), passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from client import protocol
from client.protocol import Headers, ProtocolError
from client.webhooks import (
    SLACK_TIMESTAMP_HEADER,
    WebhookSpec,
    parse_spec,
)

__all__ = [
    "SIGNATURE_CODE",
    "TOO_LARGE_CODE",
    "Refusal",
    "WebhookCheck",
    "WebhookSpec",
    "max_bytes",
    "open_check",
    "parse_spec",
]

MIB = 1024 * 1024
#: GitHub's documented payload cap, read generously (MiB, not MB).
GITHUB_MAX_BYTES = 25 * MIB
STRIPE_MAX_BYTES = 1 * MIB
SLACK_MAX_BYTES = 4 * MIB
#: The default of ``LUMINET_WEBHOOK_MAX_BYTES``, for the generic ``hmac`` rule.
GENERIC_MAX_BYTES = 1 * MIB

#: ``Luminet-Error`` codes of the two refusals.
SIGNATURE_CODE = "webhook-signature"
TOO_LARGE_CODE = "webhook-too-large"

Clock = Callable[[], float]

_HEX_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


@dataclass(frozen=True)
class Refusal:
    """Why a request does not pass: its status, ``Luminet-Error`` code and a short reason."""

    status: int
    code: str
    #: Safe to show the caller: names a header or a rule, never a secret or a digest.
    reason: str


def _forbidden(reason: str) -> Refusal:
    return Refusal(403, SIGNATURE_CODE, reason)


def _too_large(limit: int) -> Refusal:
    return Refusal(413, TOO_LARGE_CODE, f"body larger than {limit} bytes")


def max_bytes(spec: WebhookSpec, generic_max_bytes: int) -> int:
    """The most of a body the edge holds to check it against ``spec``."""
    match spec.provider:
        case "github":
            return GITHUB_MAX_BYTES
        case "stripe":
            return STRIPE_MAX_BYTES
        case "slack":
            return SLACK_MAX_BYTES
        case _:
            return generic_max_bytes


@dataclass
class _Candidate:
    """One rule's HMAC over the request, and the digests that would satisfy it."""

    mac: hmac.HMAC
    expected: list[bytes]
    limit: int


def _only_value(headers: Headers, name: str) -> str | Refusal:
    values = protocol.header_values(headers, name)
    if not values:
        return _forbidden(f"missing {name}")
    if len(values) > 1:
        return _forbidden(f"more than one {name}")
    return values[0].strip()


def _timestamp(value: str, name: str, spec: WebhookSpec, now: float) -> Refusal | None:
    if not _TIMESTAMP_RE.fullmatch(value):
        return _forbidden(f"malformed {name}")
    assert spec.tolerance is not None  # parse_spec gives Stripe and Slack one
    # Both ways: a timestamp in the future is as much a replay window as a stale one.
    if abs(now - int(value)) > spec.tolerance:
        return _forbidden(f"timestamp outside {spec.tolerance} s")
    return None


def _new_mac(spec: WebhookSpec, prefix: bytes = b"") -> hmac.HMAC:
    mac = hmac.new(spec.secret.encode(), digestmod=hashlib.sha256)
    mac.update(prefix)
    return mac


def _github(spec: WebhookSpec, headers: Headers, limit: int) -> _Candidate | Refusal:
    value = _only_value(headers, spec.header)
    if isinstance(value, Refusal):
        return value
    scheme, _, digest = value.partition("=")
    if scheme != "sha256" or not _HEX_SHA256_RE.fullmatch(digest):
        return _forbidden(f"malformed {spec.header}")
    return _Candidate(_new_mac(spec), [bytes.fromhex(digest)], limit)


def _stripe(spec: WebhookSpec, headers: Headers, now: float, limit: int) -> _Candidate | Refusal:
    value = _only_value(headers, spec.header)
    if isinstance(value, Refusal):
        return value
    timestamps: list[str] = []
    expected: list[bytes] = []
    for item in value.split(","):
        key, _, item_value = item.strip().partition("=")
        if key == "t":
            timestamps.append(item_value)
        # Several v1 values while a secret is rolled; other schemes (v0) are not ours.
        elif key == "v1" and _HEX_SHA256_RE.fullmatch(item_value):
            expected.append(bytes.fromhex(item_value))
    if len(timestamps) != 1:
        return _forbidden(f"malformed {spec.header}: no single t=")
    if not expected:
        return _forbidden(f"malformed {spec.header}: no v1 signature")
    refused = _timestamp(timestamps[0], spec.header, spec, now)
    if refused is not None:
        return refused
    # Stripe signs f"{t}.{body}", t exactly as it sent it.
    return _Candidate(_new_mac(spec, f"{timestamps[0]}.".encode()), expected, limit)


def _slack(spec: WebhookSpec, headers: Headers, now: float, limit: int) -> _Candidate | Refusal:
    value = _only_value(headers, spec.header)
    if isinstance(value, Refusal):
        return value
    timestamp = _only_value(headers, SLACK_TIMESTAMP_HEADER)
    if isinstance(timestamp, Refusal):
        return timestamp
    version, _, digest = value.partition("=")
    if version != "v0" or not _HEX_SHA256_RE.fullmatch(digest):
        return _forbidden(f"malformed {spec.header}")
    refused = _timestamp(timestamp, SLACK_TIMESTAMP_HEADER, spec, now)
    if refused is not None:
        return refused
    # Slack signs f"v0:{timestamp}:{body}".
    return _Candidate(_new_mac(spec, f"v0:{timestamp}:".encode()), [bytes.fromhex(digest)], limit)


def _generic_digest(value: str) -> bytes | None:
    """The 32 bytes that hex, ``sha256=<hex>`` or base64 (standard or URL-safe) spell."""
    if value.lower().startswith("sha256="):
        value = value[len("sha256=") :]
    if _HEX_SHA256_RE.fullmatch(value):
        return bytes.fromhex(value)
    standard = value.translate(_URLSAFE_TO_STANDARD)
    try:
        digest = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):  # ValueError: not ASCII
        return None
    return digest if len(digest) == hashlib.sha256().digest_size else None


def _generic(spec: WebhookSpec, headers: Headers, limit: int) -> _Candidate | Refusal:
    value = _only_value(headers, spec.header)
    if isinstance(value, Refusal):
        return value
    digest = _generic_digest(value)
    if digest is None:
        return _forbidden(f"malformed {spec.header}")
    return _Candidate(_new_mac(spec), [digest], limit)


def _candidate(
    spec: WebhookSpec, headers: Headers, now: float, generic_max_bytes: int
) -> _Candidate | Refusal:
    limit = max_bytes(spec, generic_max_bytes)
    match spec.provider:
        case "github":
            return _github(spec, headers, limit)
        case "stripe":
            return _stripe(spec, headers, now, limit)
        case "slack":
            return _slack(spec, headers, now, limit)
        case _:
            return _generic(spec, headers, limit)


class WebhookCheck:
    """The check of one request's body against the rules its headers could satisfy."""

    def __init__(self, candidates: list[_Candidate]) -> None:
        self._candidates = candidates
        self._size = 0
        #: The most of the body this check holds: past it, :meth:`update` refuses.
        self.limit = max(candidate.limit for candidate in candidates)

    def update(self, chunk: bytes) -> Refusal | None:
        """Hash the next part of the body; a Refusal (413) once it outgrows every cap."""
        self._size += len(chunk)
        if self._size > self.limit:
            return _too_large(self.limit)
        for candidate in self._candidates:
            if self._size <= candidate.limit:
                candidate.mac.update(chunk)
        return None

    def finish(self) -> Refusal | None:
        """None when the whole body, now in, matches a rule; else why not."""
        matched = False
        for candidate in self._candidates:
            if self._size > candidate.limit:
                continue
            digest = candidate.mac.digest()
            for expected in candidate.expected:
                # Every comparison runs: the time taken says nothing of how near a guess is.
                matched |= hmac.compare_digest(digest, expected)
        return None if matched else _forbidden("signature does not match")


def open_check(
    specs: Sequence[WebhookSpec],
    headers: Headers,
    *,
    clock: Clock,
    generic_max_bytes: int = GENERIC_MAX_BYTES,
) -> WebhookCheck | Refusal:
    """Start checking a request against ``specs`` (at least one), from its headers alone.

    A Refusal here means no rule can pass whatever the body: answer it without
    reading any. With several rules, the refusal named is the first rule's whose
    header was there (what failed), else the first rule's missing header.
    """
    if not specs:
        raise ValueError("open_check needs at least one webhook rule")
    now = clock()
    candidates: list[_Candidate] = []
    refusals: list[Refusal] = []
    for spec in specs:
        found = _candidate(spec, headers, now, generic_max_bytes)
        if isinstance(found, Refusal):
            refusals.append(found)
        else:
            candidates.append(found)
    if not candidates:
        present = [refusal for refusal in refusals if not refusal.reason.startswith("missing ")]
        return (present or refusals)[0]
    check = WebhookCheck(candidates)
    try:
        declared = protocol.declared_length(headers)
    except ProtocolError:
        # Unknowable framing is for the forwarding layer to refuse; the cap still
        # holds on the bytes as they arrive.
        declared = None
    if declared is not None and declared > check.limit:
        return _too_large(check.limit)
    return check
