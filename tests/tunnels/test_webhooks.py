"""Webhook rules and signature checks, with no I/O.

Every signature here is made the way the provider documents it, written out in
the test, not with the module under test:

- GitHub: ``X-Hub-Signature-256: sha256=`` + hex HMAC-SHA256(secret, body).
- Stripe: ``Stripe-Signature: t=T,v1=`` + hex HMAC-SHA256(secret, f"{T}.{body}").
- Slack: ``X-Slack-Signature: v0=`` + hex HMAC-SHA256(secret, f"v0:{T}:{body}"),
  with T in ``X-Slack-Request-Timestamp``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from tunnels.edge.policy import PolicyError, TunnelPolicy, policy_from_json
from tunnels.edge.webhooks import (
    GITHUB_MAX_BYTES,
    Refusal,
    WebhookCheck,
    WebhookSpec,
    open_check,
    parse_spec,
)

NOW = 1_780_000_000
BODY = b'{"action":"opened","number":7,"text":"caf\xc3\xa9 \\u00e9"}\n'
GITHUB_SECRET = "It's a Secret to Everybody"
STRIPE_SECRET = "whsec_test_5f2b8e0c1a"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
GENERIC_SECRET = "generic-secret"


def clock() -> float:
    return float(NOW)


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def github_headers(body: bytes, secret: str = GITHUB_SECRET) -> list[tuple[str, str]]:
    signature = "sha256=" + hmac_sha256(secret, body).hex()
    return [("content-type", "application/json"), ("x-hub-signature-256", signature)]


def stripe_signature(body: bytes, timestamp: int, secret: str = STRIPE_SECRET) -> str:
    return hmac_sha256(secret, str(timestamp).encode() + b"." + body).hex()


def stripe_headers(
    body: bytes, timestamp: int = NOW, secret: str = STRIPE_SECRET
) -> list[tuple[str, str]]:
    return [("stripe-signature", f"t={timestamp},v1={stripe_signature(body, timestamp, secret)}")]


def slack_headers(
    body: bytes, timestamp: int = NOW, secret: str = SLACK_SECRET
) -> list[tuple[str, str]]:
    basestring = b"v0:" + str(timestamp).encode() + b":" + body
    return [
        ("x-slack-request-timestamp", str(timestamp)),
        ("x-slack-signature", "v0=" + hmac_sha256(secret, basestring).hex()),
    ]


def generic_headers(body: bytes, secret: str = GENERIC_SECRET) -> list[tuple[str, str]]:
    return [("x-signature", hmac_sha256(secret, body).hex())]


SIGNED = {
    "github": (f"github:{GITHUB_SECRET}", github_headers),
    "stripe": (f"stripe:{STRIPE_SECRET}", stripe_headers),
    "slack": (f"slack:{SLACK_SECRET}", slack_headers),
    "hmac": (f"hmac:{GENERIC_SECRET}", generic_headers),
}


def check(spec: str | list[str], headers: list[tuple[str, str]], **kwargs) -> WebhookCheck:
    specs = [parse_spec(text) for text in ([spec] if isinstance(spec, str) else spec)]
    opened = open_check(specs, headers, clock=clock, **kwargs)
    assert isinstance(opened, WebhookCheck), opened
    return opened


def refusal_at_open(spec: str | list[str], headers: list[tuple[str, str]], **kwargs) -> Refusal:
    specs = [parse_spec(text) for text in ([spec] if isinstance(spec, str) else spec)]
    opened = open_check(specs, headers, clock=clock, **kwargs)
    assert isinstance(opened, Refusal), opened
    return opened


def verify(spec: str | list[str], headers, chunks: list[bytes], **kwargs) -> Refusal | None:
    opened = check(spec, headers, **kwargs)
    for chunk in chunks:
        refused = opened.update(chunk)
        if refused is not None:
            return refused
    return opened.finish()


def forbidden(reason: str) -> Refusal:
    return Refusal(403, "webhook-signature", reason)


# --- parse_spec ---------------------------------------------------------------


def test_github_spec_keeps_every_character_after_the_provider_as_the_secret():
    spec = parse_spec("github:a:b:c")
    assert (spec.provider, spec.secret, spec.header, spec.tolerance) == (
        "github",
        "a:b:c",
        "X-Hub-Signature-256",
        None,
    )


@pytest.mark.parametrize(
    ("text", "provider", "header", "tolerance", "secret"),
    [
        ("stripe:whsec_abc", "stripe", "Stripe-Signature", 300, "whsec_abc"),
        ("stripe:600:whsec_abc", "stripe", "Stripe-Signature", 600, "whsec_abc"),
        ("slack:abc123", "slack", "X-Slack-Signature", 300, "abc123"),
        ("slack:60:abc123", "slack", "X-Slack-Signature", 60, "abc123"),
        ("hmac:s3cret", "hmac", "X-Signature", None, "s3cret"),
        ("hmac:X-Hook-Sig:s3cret", "hmac", "X-Hook-Sig", None, "s3cret"),
        ("hmac:X-Signature:se:cret", "hmac", "X-Signature", None, "se:cret"),
        ("GitHub:s3cret", "github", "X-Hub-Signature-256", None, "s3cret"),
    ],
)
def test_spec_syntax(text, provider, header, tolerance, secret):
    spec = parse_spec(text)
    assert (spec.provider, spec.header, spec.tolerance, spec.secret) == (
        provider,
        header,
        tolerance,
        secret,
    )
    assert parse_spec(spec.text()) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gitlab:s3cret", "unknown webhook provider 'gitlab'"),
        ("s3cret", "unknown webhook provider"),
        ("github", "needs a secret"),
        ("github:", "needs a secret"),
        ("stripe:", "needs a secret"),
        ("stripe:600:", "needs a secret"),
        ("hmac:X-Signature:", "needs a secret"),
        ("slack:abc:s3cret", "tolerance in whole seconds"),
        ("stripe:-5:s3cret", "tolerance in whole seconds"),
        ("stripe:0:s3cret", "tolerance must be 1 to 86400 seconds, not 0"),
        ("slack:86401:s3cret", "tolerance must be 1 to 86400 seconds, not 86401"),
        ("hmac:Bad Header:s3cret", "not a header name"),
        ("github:s3c\nret", "control character"),
    ],
)
def test_bad_spec_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


def test_error_messages_never_repeat_a_secret():
    """A secret with a colon may be mistaken for an option; the error must not echo it."""
    for text in ("stripe:half-of:the-secret", "hmac:half of:the-secret"):
        with pytest.raises(ValueError) as raised:
            parse_spec(text)
        assert "half" not in str(raised.value)
        assert "the-secret" not in str(raised.value)


def test_a_spec_shows_its_provider_and_never_its_secret():
    spec = parse_spec(f"github:{GITHUB_SECRET}")
    assert spec.describe() == "webhook github"
    assert GITHUB_SECRET not in repr(spec)


# --- accepted -----------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(SIGNED))
def test_a_correctly_signed_body_passes(provider):
    spec, sign = SIGNED[provider]
    assert verify(spec, sign(BODY), [BODY]) is None


@pytest.mark.parametrize("provider", sorted(SIGNED))
def test_chunk_boundaries_anywhere(provider):
    """The body may arrive in any parts, empty ones included."""
    spec, sign = SIGNED[provider]
    headers = sign(BODY)
    for cut in range(len(BODY) + 1):
        assert verify(spec, headers, [BODY[:cut], b"", BODY[cut:]]) is None, cut
        second = (cut + 7) % (len(BODY) + 1)
        first, last = sorted((cut, second))
        parts = [BODY[:first], BODY[first:last], BODY[last:]]
        assert verify(spec, headers, parts) is None, (first, last)
    assert verify(spec, headers, [bytes([byte]) for byte in BODY]) is None


def test_an_empty_body_can_be_signed():
    assert verify(f"github:{GITHUB_SECRET}", github_headers(b""), []) is None


@pytest.mark.parametrize(
    "encode",
    [
        lambda digest: digest.hex(),
        lambda digest: digest.hex().upper(),
        lambda digest: "sha256=" + digest.hex(),
        lambda digest: base64.b64encode(digest).decode(),
        lambda digest: base64.urlsafe_b64encode(digest).decode().rstrip("="),
    ],
    ids=["hex", "HEX", "sha256=hex", "base64", "base64url-unpadded"],
)
def test_generic_signature_encodings(encode):
    signature = encode(hmac_sha256(GENERIC_SECRET, BODY))
    assert verify(f"hmac:{GENERIC_SECRET}", [("X-Signature", signature)], [BODY]) is None


def test_generic_rule_reads_the_header_it_names():
    signature = hmac_sha256(GENERIC_SECRET, BODY).hex()
    spec = f"hmac:X-Hook-Sig:{GENERIC_SECRET}"
    assert verify(spec, [("x-hook-sig", signature)], [BODY]) is None
    assert refusal_at_open(spec, [("x-signature", signature)]) == forbidden("missing X-Hook-Sig")


# --- refused after the body ---------------------------------------------------


@pytest.mark.parametrize("provider", sorted(SIGNED))
def test_a_tampered_body_is_refused(provider):
    spec, sign = SIGNED[provider]
    tampered = BODY.replace(b"7", b"8")
    assert verify(spec, sign(BODY), [tampered]) == forbidden("signature does not match")
    assert verify(spec, sign(BODY), [BODY, b" "]) == forbidden("signature does not match")
    assert verify(spec, sign(BODY), [BODY[:-1]]) == forbidden("signature does not match")


@pytest.mark.parametrize("provider", sorted(SIGNED))
def test_a_wrong_secret_is_refused(provider):
    spec, sign = SIGNED[provider]
    assert verify(spec, sign(BODY, secret="not-the-secret"), [BODY]) == forbidden(
        "signature does not match"
    )


# --- refused before the body --------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "header"),
    [
        ("github", "X-Hub-Signature-256"),
        ("stripe", "Stripe-Signature"),
        ("slack", "X-Slack-Signature"),
        ("slack", "X-Slack-Request-Timestamp"),
        ("hmac", "X-Signature"),
    ],
)
def test_a_missing_header_is_refused_before_the_body(provider, header):
    spec, sign = SIGNED[provider]
    headers = [(name, value) for name, value in sign(BODY) if name != header.lower()]
    assert refusal_at_open(spec, headers) == forbidden(f"missing {header}")


ZEROS = "0" * 64
SLACK_NOW = ("x-slack-request-timestamp", str(NOW))
STRIPE = "Stripe-Signature"


@pytest.mark.parametrize(
    ("provider", "headers", "reason"),
    [
        ("github", [("x-hub-signature-256", "sha1=" + ZEROS)], "malformed X-Hub-Signature-256"),
        ("github", [("x-hub-signature-256", "sha256=abc")], "malformed X-Hub-Signature-256"),
        ("github", github_headers(BODY) * 2, "more than one X-Hub-Signature-256"),
        ("stripe", [(STRIPE, "v1=" + ZEROS)], f"malformed {STRIPE}: no single t="),
        ("stripe", [(STRIPE, f"t={NOW},t={NOW},v1={ZEROS}")], f"malformed {STRIPE}: no single t="),
        ("stripe", [(STRIPE, f"t={NOW},v0={ZEROS}")], f"malformed {STRIPE}: no v1 signature"),
        ("stripe", [(STRIPE, f"t=soon,v1={ZEROS}")], f"malformed {STRIPE}"),
        ("slack", [SLACK_NOW, ("x-slack-signature", "v1=" + ZEROS)], "malformed X-Slack-Signature"),
        (
            "slack",
            [("x-slack-request-timestamp", "1e9"), ("x-slack-signature", "v0=" + ZEROS)],
            "malformed X-Slack-Request-Timestamp",
        ),
        ("hmac", [("x-signature", "not a signature")], "malformed X-Signature"),
        ("hmac", [("x-signature", base64.b64encode(b"short").decode())], "malformed X-Signature"),
        ("hmac", [("x-signature", "é" * 44)], "malformed X-Signature"),
    ],
)
def test_a_malformed_header_is_refused_before_the_body(provider, headers, reason):
    spec, _ = SIGNED[provider]
    assert refusal_at_open(spec, headers) == forbidden(reason)


@pytest.mark.parametrize("provider", ["stripe", "slack"])
@pytest.mark.parametrize("offset", [-301, 301, -10_000, 10_000])
def test_a_stale_or_future_timestamp_is_refused(provider, offset):
    spec, sign = SIGNED[provider]
    assert refusal_at_open(spec, sign(BODY, NOW + offset)) == forbidden("timestamp outside 300 s")


@pytest.mark.parametrize("provider", ["stripe", "slack"])
@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_a_timestamp_within_the_tolerance_passes(provider, offset):
    spec, sign = SIGNED[provider]
    assert verify(spec, sign(BODY, NOW + offset), [BODY]) is None


def test_the_tolerance_is_the_rules():
    spec = f"stripe:30:{STRIPE_SECRET}"
    assert verify(spec, stripe_headers(BODY, NOW - 30), [BODY]) is None
    assert refusal_at_open(spec, stripe_headers(BODY, NOW - 31)) == forbidden(
        "timestamp outside 30 s"
    )


def test_the_signed_timestamp_is_the_one_checked():
    """A fresh t with a signature over an old one is a replay: it does not match."""
    old = NOW - 3600
    headers = [("stripe-signature", f"t={NOW},v1={stripe_signature(BODY, old)}")]
    assert verify(f"stripe:{STRIPE_SECRET}", headers, [BODY]) == forbidden(
        "signature does not match"
    )


# --- Stripe's several signatures ------------------------------------------------


def test_stripe_accepts_any_one_of_several_v1_signatures():
    """While a secret is rolled, Stripe signs with the old and the new one."""
    old = stripe_signature(BODY, NOW, "whsec_old")
    new = stripe_signature(BODY, NOW, STRIPE_SECRET)
    for order in ([old, new], [new, old]):
        value = f"t={NOW}," + ",".join(f"v1={signature}" for signature in order)
        value += ",v0=" + "0" * 64
        assert verify(f"stripe:{STRIPE_SECRET}", [("stripe-signature", value)], [BODY]) is None
    only_old = [("stripe-signature", f"t={NOW},v1={old},v1={'ab' * 32}")]
    assert verify(f"stripe:{STRIPE_SECRET}", only_old, [BODY]) == forbidden(
        "signature does not match"
    )


# --- several rules --------------------------------------------------------------


def test_several_rules_pass_a_request_that_satisfies_any():
    rules = [f"github:{GITHUB_SECRET}", f"stripe:{STRIPE_SECRET}"]
    assert verify(rules, github_headers(BODY), [BODY]) is None
    assert verify(rules, stripe_headers(BODY), [BODY]) is None
    assert verify(rules, stripe_headers(BODY, secret="other"), [BODY]) == forbidden(
        "signature does not match"
    )


def test_two_secrets_of_one_provider_for_a_rotation():
    rules = ["github:old-secret", f"github:{GITHUB_SECRET}"]
    assert verify(rules, github_headers(BODY), [BODY]) is None
    assert verify(rules, github_headers(BODY, "old-secret"), [BODY]) is None


def test_several_rules_name_what_failed_rather_than_a_missing_header():
    rules = [f"github:{GITHUB_SECRET}", f"stripe:{STRIPE_SECRET}"]
    assert refusal_at_open(rules, stripe_headers(BODY, NOW - 3600)) == forbidden(
        "timestamp outside 300 s"
    )
    assert refusal_at_open(rules, []) == forbidden("missing X-Hub-Signature-256")


def test_open_check_needs_a_rule():
    with pytest.raises(ValueError):
        open_check([], [], clock=clock)


# --- caps -----------------------------------------------------------------------


def test_a_body_over_the_cap_is_refused_as_it_arrives():
    body = b"x" * 11
    headers = generic_headers(body)
    at_cap = body[:10]
    spec = f"hmac:{GENERIC_SECRET}"
    assert verify(spec, generic_headers(at_cap), [at_cap], generic_max_bytes=10) is None
    opened = check(spec, headers, generic_max_bytes=10)
    assert opened.update(body[:6]) is None
    too_large = Refusal(413, "webhook-too-large", "body larger than 10 bytes")
    assert opened.update(body[6:]) == too_large


def test_a_declared_length_over_the_cap_is_refused_before_the_body():
    headers = [*generic_headers(b"x" * 11), ("content-length", "11")]
    assert refusal_at_open(f"hmac:{GENERIC_SECRET}", headers, generic_max_bytes=10) == Refusal(
        413, "webhook-too-large", "body larger than 10 bytes"
    )
    length = ("content-length", str(GITHUB_MAX_BYTES + 1))
    assert refusal_at_open(f"github:{GITHUB_SECRET}", [*github_headers(BODY), length]) == Refusal(
        413, "webhook-too-large", f"body larger than {GITHUB_MAX_BYTES} bytes"
    )
    at_cap = ("content-length", str(GITHUB_MAX_BYTES))
    check(f"github:{GITHUB_SECRET}", [*github_headers(BODY), at_cap])


def test_each_provider_has_its_cap():
    caps = {}
    for provider, (spec, sign) in SIGNED.items():
        caps[provider] = check(spec, sign(BODY), generic_max_bytes=1234).limit
    assert caps == {
        "github": 25 * 1024 * 1024,
        "stripe": 1024 * 1024,
        "slack": 4 * 1024 * 1024,
        "hmac": 1234,
    }


def test_with_several_rules_the_largest_cap_holds_and_smaller_rules_drop_out():
    """A body past the generic cap can still pass as GitHub's, and never as the generic's."""
    body = b"y" * 20
    rules = [f"hmac:{GENERIC_SECRET}", f"github:{GITHUB_SECRET}"]
    both = [*generic_headers(body), *github_headers(body)]
    assert verify(rules, both, [body], generic_max_bytes=10) is None
    generic_right_github_wrong = [*generic_headers(body), *github_headers(body, "other")]
    assert verify(rules, generic_right_github_wrong, [body], generic_max_bytes=10) == forbidden(
        "signature does not match"
    )
    assert verify(rules, generic_headers(body), [body], generic_max_bytes=10) == Refusal(
        413, "webhook-too-large", "body larger than 10 bytes"
    )


def test_header_names_are_case_insensitive():
    headers = [(name.upper(), value) for name, value in github_headers(BODY)]
    assert verify(f"github:{GITHUB_SECRET}", headers, [BODY]) is None


def test_webhookspec_is_exported():
    assert isinstance(parse_spec("github:x"), WebhookSpec)


# --- in the tunnel's policy ---------------------------------------------------------


def test_policy_carries_webhook_rules_through_the_registry_wire():
    """Whichever process a request lands on reads the same rules, secrets included."""
    rules = [f"github:{GITHUB_SECRET}", f"stripe:60:{STRIPE_SECRET}"]
    policy = TunnelPolicy.build(webhooks=rules)
    assert policy and policy.webhooks == tuple(parse_spec(rule) for rule in rules)
    assert policy_from_json(policy.to_json()).webhooks == policy.webhooks
    assert policy.describe() == ["webhook github", "webhook stripe"]
    assert GITHUB_SECRET not in repr(policy)


def test_policy_without_webhooks_writes_none():
    assert "webhooks" not in TunnelPolicy.build(allow=["10.0.0.0/8"]).to_wire()


def test_a_bad_webhook_rule_in_the_registry_is_a_policy_error():
    with pytest.raises(PolicyError):
        TunnelPolicy.from_wire({"webhooks": ["gitlab:x"]})
