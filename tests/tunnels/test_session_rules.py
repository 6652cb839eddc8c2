"""A tunnel's rules at auth: built into a policy, put in the registry entry, named back."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from client import protocol

from .harness import GOOD_TOKEN, FakeTokens, backends, scripted_tunnel

pytestmark = pytest.mark.timeout(10)


def run(coroutine):
    return asyncio.run(coroutine)


RULES = protocol.Auth(
    token=GOOD_TOKEN,
    basic_auth=("ann:correct horse",),
    allow_cidrs=("10.0.0.0/8", "::1"),
    deny_cidrs=("10.9.0.0/16",),
)


def test_rules_reach_the_registry_entry_and_come_back_by_name():
    """The registry's route carries the policy; auth_ok names the rules, not the password."""

    async def scenario():
        shared = backends()
        async with scripted_tunnel(shared) as tunnel:
            await tunnel.client_says(RULES)
            ok = await tunnel.next_sent()
            route = await shared.registry.lookup(ok.subdomain)
            return ok, route

    ok, route = run(scenario())
    assert ok.rules == ("basic auth", "allow 10.0.0.0/8", "allow ::1/128", "deny 10.9.0.0/16")
    assert route.policy.credentials_match(b"ann:correct horse")
    assert route.policy.allow == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


def test_a_tunnel_without_rules_has_no_policy():
    """No rule, no token allow list: the route's policy is None (nothing to check per request)."""

    async def scenario():
        shared = backends()
        async with scripted_tunnel(shared) as tunnel:
            ok = await tunnel.authenticate()
            return ok, await shared.registry.lookup(ok.subdomain)

    ok, route = run(scenario())
    assert ok.rules == () and route.policy is None


def test_the_token_allow_list_is_merged_in():
    """The token's allow list narrows the tunnel's, or stands alone."""

    async def scenario(auth):
        shared = backends()
        tokens = FakeTokens(allowed_cidrs={1: "10.1.0.0/16, 2001:db8::/32"})
        async with scripted_tunnel(shared, tokens) as tunnel:
            await tunnel.client_says(auth)
            ok = await tunnel.next_sent()
            return ok.rules

    assert run(scenario(RULES)) == ("basic auth", "allow 10.1.0.0/16", "deny 10.9.0.0/16")
    assert run(scenario(protocol.Auth(token=GOOD_TOKEN))) == (
        "allow 10.1.0.0/16",
        "allow 2001:db8::/32",
    )


def test_rules_outside_the_token_allow_list_are_refused():
    """An allow list with nothing in common with the token's is refused at auth."""

    async def scenario():
        tokens = FakeTokens(allowed_cidrs={1: "192.0.2.0/24"})
        async with scripted_tunnel(backends(), tokens) as tunnel:
            await tunnel.client_says(protocol.Auth(token=GOOD_TOKEN, allow_cidrs=("10.0.0.0/8",)))
            return await tunnel.next_sent(), await tunnel.close_code()

    reply, code = run(scenario())
    assert isinstance(reply, protocol.AuthError) and reply.code == "rules-refused"
    assert "192.0.2.0/24" in reply.message
    assert code == protocol.CloseCode.AUTH_FAILED
