"""Webhook rules as they travel in ``auth``: validated at the boundary, never shown."""

import json

import pytest

from client import protocol
from client.protocol import ProtocolError


def auth_text(**rules):
    return json.dumps({"type": "auth", "token": "lmn_x", **rules})


def test_webhook_rules_roundtrip():
    auth = protocol.Auth(token="lmn_x", webhooks=("github:s3cret", "stripe:600:whsec_abc"))
    assert protocol.decode(protocol.encode(auth)) == auth


def test_auth_without_webhooks_has_none():
    decoded = protocol.decode(auth_text())
    assert isinstance(decoded, protocol.Auth) and decoded.webhooks == ()


def test_auth_repr_names_providers_and_hides_secrets():
    text = repr(protocol.Auth(token="lmn_x", webhooks=("github:top-secret", "slack:hush")))
    assert "['github', 'slack']" in text
    assert "top-secret" not in text and "hush" not in text


@pytest.mark.parametrize(
    ("webhooks", "message"),
    [
        (["gitlab:s3cret"], "webhook rule: unknown webhook provider 'gitlab'"),
        (["github:"], "webhook rule: a github webhook needs a secret"),
        (["stripe:0:whsec_x"], "webhook rule: stripe webhook: tolerance must be 1 to 86400"),
        (["github:x"] * 9, "'webhooks' has more than 8 entries"),
        ("github:x", "'webhooks' must be a list of strings"),
        ([7], "'webhooks' must be a list of strings"),
    ],
)
def test_bad_webhook_rules_are_protocol_errors(webhooks, message):
    with pytest.raises(ProtocolError, match=message):
        protocol.decode(auth_text(webhooks=webhooks))


def test_a_bad_rule_never_echoes_its_secret():
    with pytest.raises(ProtocolError) as raised:
        protocol.decode(auth_text(webhooks=["stripe:half-of:the-secret"]))
    assert "half-of" not in str(raised.value) and "the-secret" not in str(raised.value)


def test_validate_webhooks_caps_the_count():
    with pytest.raises(ProtocolError, match="at most 8 webhook rules"):
        protocol.validate_webhooks(["github:x"] * 9)
