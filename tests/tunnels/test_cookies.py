"""Set-Cookie lines from tunnels: those reaching beyond the tunnel's host made host-only."""

import pytest

from tunnels.edge.cookies import host_only_cookies

HOST = "abc.tunnel.example.com"
DOMAIN = "tunnel.example.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sid=1; Domain=tunnel.example.com; Path=/", "sid=1; Path=/"),
        ("sid=1; domain=.Tunnel.Example.com", "sid=1"),
        ("sid=1; Path=/; Domain=example.com; Secure", "sid=1; Path=/; Secure"),
        ("sid=1; Domain=com", "sid=1"),
        ("sid=1; Domain=other.tunnel.example.com; HttpOnly", "sid=1; HttpOnly"),
        ("sid=1; Domain=x.other.tunnel.example.com", "sid=1"),
        # The last Domain counts: an earlier harmless one does not save a later one.
        ("sid=1; Domain=abc.tunnel.example.com; Domain=tunnel.example.com", "sid=1"),
        # An empty Domain is ignored by the RFC (the one before it counts), and some
        # browsers take the first: any reaching Domain makes the cookie host-only.
        ("sid=1; Domain=tunnel.example.com; Domain=", "sid=1"),
        ("sid=1; Domain=tunnel.example.com; Domain=abc.tunnel.example.com", "sid=1"),
        ("sid=1; Domain=tunnel.example.com.; Path=/", "sid=1; Path=/"),
    ],
)
def test_cookies_reaching_beyond_the_host_become_host_only(value, expected):
    """The tunnel domain, a parent or a sibling as Domain: the attribute is removed."""
    headers = [("Content-Type", "text/plain"), ("Set-Cookie", value)]
    assert host_only_cookies(headers, HOST, DOMAIN) == [
        ("Content-Type", "text/plain"),
        ("Set-Cookie", expected),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "sid=1",
        "sid=1; Path=/; HttpOnly; SameSite=Lax",
        "sid=1; Domain=abc.tunnel.example.com",
        "sid=1;  DOMAIN=.abc.tunnel.example.com ; Path=/",
        "sid=1; Domain=deeper.abc.tunnel.example.com",
        "sid=1; Domain=unrelated.org",  # the browser refuses it anyway
        "domain=tunnel.example.com; Path=/",  # a cookie named domain
        "sid=caf\xe9\xff; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
    ],
)
def test_other_cookies_pass_byte_for_byte(value):
    """Host-only cookies and those for the host itself are not touched."""
    headers = [("Set-Cookie", value), ("set-cookie", value)]
    assert host_only_cookies(headers, HOST, DOMAIN) is headers
