"""Behind a trusted proxy the scope names the caller and scheme the proxy saw; from any
other peer, X-Forwarded-* headers change nothing."""

import asyncio
import ipaddress

import pytest
from django.test import override_settings

from tunnels.edge.proxies import BehindProxies, as_seen_by_proxies

TRUSTED = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


def scope(peer="127.0.0.1", headers=(), kind="http"):
    scheme = "http" if kind == "http" else "ws"
    # ASGI header names are lower-case bytes.
    pairs = [(b"host", b"abc.example.com"), *((n.lower().encode(), v.encode()) for n, v in headers)]
    return {"type": kind, "scheme": scheme, "client": [peer, 40000], "headers": pairs}


def named(rewritten, name):
    return [value.decode() for key, value in rewritten["headers"] if key == name.encode()]


def test_caller_and_scheme_come_from_a_trusted_proxy():
    """Caddy's X-Forwarded-For and -Proto make the caller the client and https the scheme,
    and are consumed."""
    seen = as_seen_by_proxies(
        scope(headers=[("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-Proto", "https")]),
        TRUSTED,
    )
    assert seen["client"] == ("198.51.100.7", 0)
    assert seen["scheme"] == "https"
    assert named(seen, "x-forwarded-for") == [] and named(seen, "x-forwarded-proto") == []
    assert named(seen, "host") == ["abc.example.com"]


def test_websockets_become_wss():
    seen = as_seen_by_proxies(
        scope(
            headers=[("X-Forwarded-For", "2001:db8::7"), ("X-Forwarded-Proto", "https")],
            kind="websocket",
        ),
        TRUSTED,
    )
    assert (seen["client"], seen["scheme"]) == (("2001:db8::7", 0), "wss")


def test_what_the_caller_claimed_stays_left_of_it():
    """Entries left of the caller's are passed on (the local server sees the chain it would
    see without the proxy), never believed."""
    forged = [("X-Forwarded-For", "10.9.9.9, 192.0.2.1, 198.51.100.7, 10.0.0.2")]
    seen = as_seen_by_proxies(scope(headers=forged), TRUSTED)
    assert seen["client"] == ("198.51.100.7", 0)
    assert named(seen, "x-forwarded-for") == ["10.9.9.9, 192.0.2.1"]


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-Proto", "https")],
        [("X-Forwarded-Proto", "https")],
    ],
)
def test_an_untrusted_peer_changes_nothing(headers):
    original = scope(peer="203.0.113.5", headers=headers)
    assert as_seen_by_proxies(original, TRUSTED) is original


def test_a_trusted_peer_without_headers_is_the_caller():
    seen = as_seen_by_proxies(scope(), TRUSTED)
    assert (seen["client"], seen["scheme"]) == (("127.0.0.1", 0), "http")


def test_an_unknown_scheme_or_caller_is_not_guessed():
    """A proto other than http/https leaves the scheme; an entry that is no address leaves
    no client, so IP rules refuse."""
    seen = as_seen_by_proxies(
        scope(headers=[("X-Forwarded-For", "unknown"), ("X-Forwarded-Proto", "gopher")]), TRUSTED
    )
    assert seen["client"] is None
    assert seen["scheme"] == "http"


def run_middleware(app_scope, trusted):
    received = []

    async def app(scope, receive, send):
        received.append(scope)

    async def nothing():
        return {}

    async def ignore(message):
        return None

    with override_settings(LUMINET_TRUSTED_PROXIES=trusted):
        asyncio.run(BehindProxies(app)(app_scope, nothing, ignore))
    return received[0]


def test_the_middleware_rewrites_only_with_trusted_proxies_set():
    proxied = scope(headers=[("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-Proto", "https")])
    assert run_middleware(proxied, TRUSTED)["scheme"] == "https"
    assert run_middleware(proxied, ())["scheme"] == "http"
    lifespan = {"type": "lifespan"}
    assert run_middleware(lifespan, TRUSTED) is lifespan
