"""A tunnel's policy: digests not passwords, networks, the wire form and its names."""

import ipaddress

import pytest

from tunnels.edge.policy import PolicyError, TunnelPolicy, intersect, policy_from_json


def nets(*texts):
    return tuple(ipaddress.ip_network(text) for text in texts)


def test_policy_keeps_salted_digests_never_plaintext():
    """Credentials are kept as digests under a salt of the policy's own."""
    policy = TunnelPolicy.build(["ann:correct horse"])
    assert policy.salt and len(policy.basic_auth) == 1
    assert b"correct horse" not in policy.basic_auth[0]
    wire = policy.to_json()
    assert "correct horse" not in wire and "ann" not in wire
    other = TunnelPolicy.build(["ann:correct horse"])
    assert other.salt != policy.salt and other.basic_auth != policy.basic_auth


def test_credentials_match():
    """The right user and password match; a wrong password or user does not."""
    policy = TunnelPolicy.build(["ann:correct horse", "bob:pass:with:colon"])
    assert policy.credentials_match(b"ann:correct horse")
    assert policy.credentials_match(b"ann:correct horse")  # remembered, same answer
    assert policy.credentials_match(b"bob:pass:with:colon")
    assert not policy.credentials_match(b"ann:correct horsf")
    assert not policy.credentials_match(b"bob:correct horse")
    assert not policy.credentials_match(b"")


def test_wire_roundtrip_keeps_every_rule():
    """from_wire(to_wire()) is the same policy, and still checks credentials."""
    policy = TunnelPolicy.build(["ann:correct horse"], ["10.0.0.0/8", "::1"], ["10.9.0.0/16"])
    again = policy_from_json(policy.to_json())
    assert again == policy
    assert again.credentials_match(b"ann:correct horse")
    assert policy_from_json(policy.to_json()) is again  # parsed once per process


@pytest.mark.parametrize("text", ["[]", "not json", '{"allow": ["nonsense"]}', '{"salt": 5}'])
def test_bad_wire_data_is_a_policy_error(text):
    """Data the policy did not write is refused with PolicyError."""
    with pytest.raises(PolicyError):
        policy_from_json(text)


def test_describe_names_rules_without_credentials():
    """describe() lists rule names; no credential or digest appears."""
    policy = TunnelPolicy.build(["ann:correct horse"], ["10.0.0.0/8"], ["::/0"])
    assert policy.describe() == ["basic auth", "allow 10.0.0.0/8", "deny ::/0"]
    assert TunnelPolicy().describe() == []


def test_empty_policy_is_falsy():
    """A policy without rules is falsy, so the edge skips it with one test."""
    assert not TunnelPolicy()
    assert not TunnelPolicy.build()
    assert TunnelPolicy.build(deny=["::/0"])


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.9.0.1", False),  # denied inside the allowed network: deny wins
        ("192.0.2.1", False),
        ("2001:db8::5", True),
        ("2001:db9::5", False),
        (None, False),
    ],
)
def test_address_rules(address, allowed):
    """Allow lists admit their networks only; deny refuses within them; unknown callers fail."""
    policy = TunnelPolicy.build(allow=["10.0.0.0/8", "2001:db8::/32"], deny=["10.9.0.0/16"])
    ip = ipaddress.ip_address(address) if address else None
    assert policy.address_allowed(ip) is allowed


def test_no_ip_rules_admit_unknown_callers():
    """Without IP rules, a caller whose address is unknown passes."""
    assert TunnelPolicy.build(["ann:correct horse"]).address_allowed(None)


def test_token_allow_list_narrows_the_tunnel_s():
    """The token's allow list and the tunnel's are intersected: a caller passes both."""
    policy = TunnelPolicy.build(allow=["10.0.0.0/8", "::1"], token_allow=nets("10.1.0.0/16"))
    assert policy.allow == nets("10.1.0.0/16")
    only_token = TunnelPolicy.build(token_allow=nets("192.0.2.0/24"))
    assert only_token.allow == nets("192.0.2.0/24")


def test_disjoint_allow_lists_are_refused():
    """A tunnel allow list outside its token's cannot form a policy (it would admit no one)."""
    with pytest.raises(PolicyError, match="outside"):
        TunnelPolicy.build(allow=["192.0.2.0/24"], token_allow=nets("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ((), ("10.0.0.0/8",), ("10.0.0.0/8",)),
        (("10.0.0.0/8",), (), ("10.0.0.0/8",)),
        (("10.0.0.0/8", "::/0"), ("10.2.0.0/16", "10.3.0.0/16"), ("10.2.0.0/16", "10.3.0.0/16")),
        (("10.2.0.0/16",), ("10.0.0.0/8", "2001:db8::/32"), ("10.2.0.0/16",)),
        (("10.0.0.0/8",), ("192.0.2.0/24",), ()),
        (("::/0",), ("0.0.0.0/0",), ()),
    ],
)
def test_intersect(first, second, expected):
    """The intersection of two network lists, as networks."""
    assert intersect(nets(*first), nets(*second)) == nets(*expected)
