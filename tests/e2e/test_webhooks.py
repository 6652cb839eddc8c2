"""Webhook signatures checked at the edge: a real client with ``--verify-webhook``.

Each request is signed here the way its provider documents, written out in the
test (not with ``tunnels.edge.webhooks``). A signed request reaches the local
server byte for byte; anything else is answered by the edge, and the local
server never sees it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import rawclient
from .conftest import Database, Launcher, Layer, Token
from .localserver import LocalServer, Reply

pytestmark = pytest.mark.timeout(90)

GITHUB_SECRET = "gh-e2e-secret:with-colon"
STRIPE_SECRET = "whsec_e2e0123456789abcdef"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
GENERIC_SECRET = "generic-e2e-secret"
#: The generic rule's cap on the server under test (LUMINET_WEBHOOK_MAX_BYTES).
GENERIC_MAX = 64 * 1024
RULES = [
    f"github:{GITHUB_SECRET}",
    f"stripe:{STRIPE_SECRET}",
    f"slack:{SLACK_SECRET}",
    f"hmac:X-Hook-Signature:{GENERIC_SECRET}",
]


def verify_flags(rules: list[str]) -> list[str]:
    return [arg for rule in rules for arg in ("--verify-webhook", rule)]


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def github(body: bytes, secret: str = GITHUB_SECRET) -> list[tuple[str, str]]:
    return [("X-Hub-Signature-256", "sha256=" + hmac_sha256(secret, body).hex())]


def stripe(body: bytes, timestamp: int | None = None) -> list[tuple[str, str]]:
    t = int(time.time()) if timestamp is None else timestamp
    signature = hmac_sha256(STRIPE_SECRET, f"{t}.".encode() + body).hex()
    return [("Stripe-Signature", f"t={t},v1={signature}")]


def slack(body: bytes) -> list[tuple[str, str]]:
    t = str(int(time.time()))
    signature = hmac_sha256(SLACK_SECRET, f"v0:{t}:".encode() + body).hex()
    return [("X-Slack-Request-Timestamp", t), ("X-Slack-Signature", f"v0={signature}")]


def generic(body: bytes) -> list[tuple[str, str]]:
    return [("X-Hook-Signature", base64.b64encode(hmac_sha256(GENERIC_SECRET, body)).decode())]


SIGNERS = {"github": github, "stripe": stripe, "slack": slack, "hmac": generic}


def payload(size: int = 4096) -> bytes:
    """A body with every byte value, so nothing on the way may re-encode it."""
    return bytes(range(256)) * (size // 256) + os.urandom(size % 256)


class Signed:
    """A server with a tunnel whose client carries every kind of webhook rule."""

    def __init__(self, launcher: Launcher, local: LocalServer, token: Token) -> None:
        self.server = launcher.server(
            name="webhook-server", LUMINET_WEBHOOK_MAX_BYTES=str(GENERIC_MAX)
        )
        self.client = launcher.client(
            self.server, token, local.port, name="webhook-client", args=verify_flags(RULES)
        )
        _, _, subdomain = self.client.wait_active()
        self.host = f"{subdomain}.localhost"
        self.local = local
        self.launcher = launcher

    def post(
        self, path: str, headers: list[tuple[str, str]], body: bytes, **kwargs
    ) -> rawclient.Response:
        headers = [("Content-Type", "application/json"), *headers]
        return rawclient.request(self.server.port, "POST", path, self.host, headers, body, **kwargs)

    def assert_refused(
        self, response: rawclient.Response, path: str, status: int, code: str, reason: str
    ) -> None:
        assert response.status == status, self.launcher.describe()
        assert response.value("Luminet-Error") == code
        assert reason.encode() in response.body
        self.assert_never_reached(path)

    def assert_never_reached(self, path: str) -> None:
        """Nothing for ``path`` reached the local server: checked after a request that
        did, sent later on the same tunnel, so a forwarded one would be there too."""
        marker = f"{path}-after"
        body = b'{"after": true}'
        response = self.post(marker, github(body), body)
        assert response.status == 200, self.launcher.describe()
        self.local.only(marker)
        assert self.local.requests(lambda r: r.path == path) == []


@pytest.fixture(scope="module")
def signed(
    layer: Layer, database: Database, dev_token: Token, local_server: LocalServer, home: Path
) -> Iterator[Signed]:
    launcher = Launcher(database, layer, home)
    try:
        yield Signed(launcher, local_server, dev_token)
    finally:
        launcher.close()


@pytest.mark.parametrize("provider", sorted(SIGNERS))
def test_a_signed_request_reaches_the_local_server_byte_for_byte(
    signed: Signed, uid: str, provider: str
) -> None:
    path = f"/{uid}/{provider}"
    signed.local.route(path, Reply(status=202, body=b"thanks"))
    body = payload()
    headers = SIGNERS[provider](body)
    response = signed.post(path, headers, body)
    assert (response.status, response.body) == (202, b"thanks"), signed.launcher.describe()
    seen = signed.local.only(path)
    assert seen.body == body
    for name, value in headers:
        assert seen.values(name) == [value]


def test_a_signed_chunked_body_is_verified_across_its_chunks(signed: Signed, uid: str) -> None:
    path = f"/{uid}/chunked"
    body = payload(70_000)
    chunks = [body[:1], body[1:30_001], body[30_001:69_999], body[69_999:]]
    response = signed.post(path, github(body), b"", chunks=chunks)
    assert response.status == 200, signed.launcher.describe()
    assert signed.local.only(path).body == body


def test_a_tampered_body_is_refused_and_never_reaches_the_local_server(
    signed: Signed, uid: str
) -> None:
    path = f"/{uid}/tampered"
    body = payload()
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    response = signed.post(path, github(body), tampered)
    signed.assert_refused(response, path, 403, "webhook-signature", "signature does not match")


def test_a_wrong_secret_is_refused(signed: Signed, uid: str) -> None:
    path = f"/{uid}/wrong-secret"
    body = payload()
    response = signed.post(path, github(body, "not-the-secret"), body)
    signed.assert_refused(response, path, 403, "webhook-signature", "signature does not match")


def test_a_stale_stripe_timestamp_is_refused(signed: Signed, uid: str) -> None:
    path = f"/{uid}/stale"
    body = payload()
    response = signed.post(path, stripe(body, int(time.time()) - 3600), body)
    signed.assert_refused(response, path, 403, "webhook-signature", "timestamp outside 300 s")


def test_a_missing_signature_is_refused(signed: Signed, uid: str) -> None:
    path = f"/{uid}/unsigned"
    response = signed.post(path, [], payload())
    signed.assert_refused(response, path, 403, "webhook-signature", "missing X-Hub-Signature-256")
    # The tunnel's owner sees it in the client's log, refused at the edge, and why.
    _, event = signed.client.wait_event("refused", where={"path": path})
    assert (event["method"], event["status"]) == ("POST", 403)
    assert event["rule"] == "webhook (missing X-Hub-Signature-256)"


def test_an_oversized_body_is_refused(signed: Signed, uid: str) -> None:
    """Past the generic rule's cap the body is refused as it arrives: 413."""
    path = f"/{uid}/oversized"
    body = payload(GENERIC_MAX + 1)
    response = signed.post(path, generic(body), b"", chunks=[body[:1000], body[1000:]])
    signed.assert_refused(response, path, 413, "webhook-too-large", f"larger than {GENERIC_MAX}")
    _, event = signed.client.wait_event("refused", where={"path": path})
    assert event["status"] == 413 and f"larger than {GENERIC_MAX}" in event["rule"]


def test_a_websocket_upgrade_is_refused(signed: Signed, uid: str) -> None:
    """A webhook is never a WebSocket: a tunnel with webhook rules takes no upgrades."""
    path = f"/{uid}/socket"
    upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        *github(b""),
    ]
    response = rawclient.request(signed.server.port, "GET", path, signed.host, upgrade)
    assert response.status == 403, signed.launcher.describe()
    assert response.value("Luminet-Error") == "webhook-signature"
    signed.assert_never_reached(path)


def test_the_rules_are_named_and_their_secrets_never_shown(signed: Signed) -> None:
    """The server names the rules in force (``webhook github``...), and no output of
    the client or the server holds a secret."""
    signed.server.stderr.wait_for(r"rules: .*webhook github", 10)
    outputs = [signed.client.stdout, signed.client.stderr, signed.server.stdout]
    outputs.append(signed.server.stderr)
    text = "\n".join(line for output in outputs for line in output.lines)
    for secret in (GITHUB_SECRET, STRIPE_SECRET, SLACK_SECRET, GENERIC_SECRET):
        assert secret not in text


def test_the_other_process_verifies_too(
    redis_launcher: Launcher, local_server: LocalServer, postgres_token: Token, uid: str
) -> None:
    """On Redis, a request landing on the process that does not hold the tunnel is
    checked there, from the rules in the registry entry."""
    server_a = redis_launcher.server(name="server-a")
    server_b = redis_launcher.server(name="server-b")
    client = redis_launcher.client(
        server_a,
        postgres_token,
        local_server.port,
        name="client-on-a",
        args=verify_flags(RULES[:1]),
    )
    _, _, subdomain = client.wait_active()
    host = f"{subdomain}.localhost"
    body = payload()
    good, bad = f"/{uid}/via-b", f"/{uid}/via-b-tampered"

    refused = rawclient.request(server_b.port, "POST", bad, host, github(body), body + b"!")
    assert refused.status == 403, redis_launcher.describe()
    assert refused.value("Luminet-Error") == "webhook-signature"
    passed = rawclient.request(server_b.port, "POST", good, host, github(body), body)
    assert passed.status == 200, redis_launcher.describe()
    assert local_server.only(good).body == body
    assert local_server.requests(lambda r: r.path == bad) == []
