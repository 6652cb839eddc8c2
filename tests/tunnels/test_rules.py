"""The edge's check of a request against its tunnel's policy: scopes in, refusals out."""

import base64
import ipaddress

import pytest

from tunnels.edge.policy import TunnelPolicy
from tunnels.edge.rules import AddressRefused, AuthRequired, admitted, caller_address, check

TRUSTED = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


def scope(peer="203.0.113.5", forwarded=(), authorization=None):
    headers = [(b"host", b"abc.localhost")]
    headers += [(b"x-forwarded-for", value.encode()) for value in forwarded]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    return {"client": [peer, 5000], "headers": headers}


def basic(credential: str) -> str:
    return "Basic " + base64.b64encode(credential.encode()).decode()


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", ["10.1.1.1"], "203.0.113.5"),  # untrusted peer: header ignored
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.7"], "198.51.100.7"),
        ("127.0.0.1", ["1.1.1.1, 198.51.100.7, 10.2.2.2"], "198.51.100.7"),  # forged left
        ("127.0.0.1", ["1.1.1.1", "2001:db8::7"], "2001:db8::7"),  # two header lines
        ("127.0.0.1", ["[2001:db8::8]:443"], "2001:db8::8"),
        ("127.0.0.1", ["10.3.3.3"], "10.3.3.3"),  # all trusted: the left-most
        ("127.0.0.1", ["garbage"], None),
        ("::ffff:192.0.2.1", [], "192.0.2.1"),
    ],
)
def test_caller_address(peer, forwarded, expected):
    """The peer, or behind trusted proxies the right-most untrusted X-Forwarded-For entry."""
    found = caller_address(scope(peer, forwarded), TRUSTED)
    assert found == (ipaddress.ip_address(expected) if expected else None)


def test_ip_rules_refuse_with_403():
    """Outside the allow list or inside the deny list is ip-denied; inside passes."""
    policy = TunnelPolicy.build(allow=["198.51.100.0/24", "2001:db8::/32"], deny=["198.51.100.9"])
    assert check(policy, scope("127.0.0.1", ["198.51.100.7"]), TRUSTED) is None
    assert check(policy, scope("127.0.0.1", ["2001:db8::1"]), TRUSTED) is None
    denied = check(policy, scope("127.0.0.1", ["198.51.100.9"]), TRUSTED)
    assert isinstance(denied, AddressRefused) and denied.rule == "deny 198.51.100.9/32"
    assert isinstance(check(policy, scope("203.0.113.5"), TRUSTED), AddressRefused)
    forged = scope("203.0.113.5", ["198.51.100.7"])  # untrusted peer claims an allowed address
    assert isinstance(check(policy, forged, TRUSTED), AddressRefused)


@pytest.mark.parametrize(
    "authorization",
    [None, basic("ann:wrong password"), basic("bob:correct horse"), "Basic !!!", "Bearer x"],
)
def test_basic_auth_refuses_with_401(authorization):
    """Missing, wrong or malformed credentials are auth-required, with WWW-Authenticate."""
    policy = TunnelPolicy.build(["ann:correct horse"])
    refusal = check(policy, scope(authorization=authorization), TRUSTED)
    assert isinstance(refusal, AuthRequired)
    assert ("WWW-Authenticate", 'Basic realm="luminet", charset="UTF-8"') in refusal.headers()


def test_matching_credentials_pass_and_authorization_is_removed():
    """The right credentials pass, and Authorization does not go on to the tunnel."""
    policy = TunnelPolicy.build(["ann:correct horse"])
    request = scope(authorization=basic("ann:correct horse"))
    assert check(policy, request, TRUSTED) is None
    forwarded = admitted(policy, request)
    assert [name for name, _ in forwarded["headers"]] == [b"host"]


def test_ip_rules_come_before_basic_auth():
    """A caller from a refused network is never asked for a password."""
    policy = TunnelPolicy.build(["ann:correct horse"], allow=["10.0.0.0/8"])
    assert isinstance(check(policy, scope(), ()), AddressRefused)
