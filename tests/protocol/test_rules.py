"""A tunnel's rules at the edge as they travel in ``auth``: validated at the boundary."""

import json

import pytest

from client import protocol
from client.protocol import ProtocolError


def auth_text(**rules):
    return json.dumps({"type": "auth", "token": "lmn_x", **rules})


def test_rules_roundtrip():
    """Credentials and networks travel in auth, and the rules in force come back in auth_ok."""
    auth = protocol.Auth(
        token="lmn_x",
        basic_auth=("ann:correct horse", "bob:pass:with:colons"),
        allow_cidrs=("10.0.0.0/8", "2001:db8::/32"),
        deny_cidrs=("10.9.0.0/16",),
    )
    assert protocol.decode(protocol.encode(auth)) == auth
    ok = protocol.AuthOk("abc123", "http://abc123.example.com", ("basic auth", "allow ::1/128"))
    assert protocol.decode(protocol.encode(ok)) == ok


def test_auth_repr_hides_passwords():
    """An Auth message never shows a password when printed or logged."""
    text = repr(protocol.Auth(token="lmn_secret", basic_auth=("ann:hunter2-long",)))
    assert "hunter2" not in text and "lmn_secret" not in text


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"basic_auth": ["ann:short"]}, "at least 8 characters"),
        ({"basic_auth": ["no-colon-at-all"]}, "user:password"),
        ({"basic_auth": [":password-only"]}, "user:password"),
        ({"basic_auth": ["ann:long enough\n"]}, "control characters"),
        ({"basic_auth": ["a:" + "x" * 300]}, "at most 256"),
        ({"basic_auth": "ann:password"}, "list of strings"),
        ({"basic_auth": [f"u{i}:password" for i in range(17)]}, "more than 16"),
        ({"allow_cidrs": ["10.0.0.0/33"]}, "not an IP network"),
        ({"deny_cidrs": ["example.com"]}, "deny rule"),
        ({"allow_cidrs": [7]}, "list of strings"),
        ({"allow_cidrs": ["10.0.0.1"] * 65}, "more than 64"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(rules, message):
    """A bad credential, network or too many rules is a ProtocolError saying which."""
    with pytest.raises(ProtocolError, match=message):
        protocol.decode(auth_text(**rules))


def test_error_never_repeats_the_credential():
    """The refusal of a short password does not quote it."""
    with pytest.raises(ProtocolError) as raised:
        protocol.decode(auth_text(basic_auth=["ann:secret7"]))
    assert "secret7" not in str(raised.value)


def test_user_id_cannot_hold_a_colon_but_the_password_can():
    """RFC 7617: the first colon ends the user-id."""
    assert protocol.credential_problem("ann:pa:ss:word") is None
    assert protocol.credential_problem("ann:pa:s") is not None


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "10.1.2.3/8", "192.0.2.7", "::1", "2001:db8::/32"])
def test_networks_and_bare_addresses_are_rules(cidr):
    """Networks with host bits and bare addresses are accepted."""
    assert protocol.cidr_problem(cidr) is None


def test_refused_notice_roundtrip_and_limits():
    """A refusal notice travels server to client; its status must be a refusal's."""
    notice = protocol.Refused("GET", "/x?y=1", 401, "basic auth")
    assert protocol.decode_from_server(protocol.encode(notice)) == notice
    bad = json.dumps({"type": "refused", "method": "GET", "path": "/", "status": 200, "rule": ""})
    with pytest.raises(ProtocolError, match="400-599"):
        protocol.decode(bad)
    with pytest.raises(ProtocolError, match="sent by the server only"):
        protocol.decode_from_client(protocol.encode(notice))
