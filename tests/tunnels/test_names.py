"""Which subdomain a tunnel gets: asked for and required, preferred, or random."""

from __future__ import annotations

import asyncio

import pytest

from client.protocol import SUBDOMAIN_RE, AuthRefusal, subdomain_problem
from tunnels.registry import Claim, MemoryRegistry
from tunnels.tunnel import names
from tunnels.tunnel.names import NameRefused, grant_subdomain


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.mark.parametrize("name", ["abc", "my-app", "a1b2c3", "x" * 63, "0-0", "pr-1234-preview"])
def test_dns_labels_in_lower_case_are_valid_names(name):
    assert subdomain_problem(name) is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("ab", "3 to 63"),
        ("x" * 64, "3 to 63"),
        ("MyApp", "lower case"),
        ("-app", "no hyphen at either end"),
        ("app-", "no hyphen at either end"),
        ("my_app", "only letters"),
        ("my.app", "only letters"),
        ("café", "only letters"),
        ("xn--caf-dma", "third and fourth"),
        ("ab--c", "third and fourth"),
    ],
)
def test_other_names_are_refused_with_the_reason(name, problem):
    assert problem in (subdomain_problem(name) or "")


def test_a_free_name_asked_for_is_granted_and_then_refused_to_another_token():
    async def scenario():
        registry = MemoryRegistry()
        granted = await grant_subdomain(registry, 1, "chan-a", "my-app", required=True)
        with pytest.raises(NameRefused) as refused:
            await grant_subdomain(registry, 2, "chan-b", "my-app", required=True)
        return granted, refused.value

    (name, claim), refused = run(scenario())
    assert (name, claim) == ("my-app", Claim(True))
    assert refused.code == AuthRefusal.SUBDOMAIN_TAKEN
    assert "in use by another tunnel" in str(refused)


def test_a_preferred_name_that_is_taken_falls_back_to_a_random_one():
    async def scenario():
        registry = MemoryRegistry()
        await grant_subdomain(registry, 1, "chan-a", "my-app", required=False)
        return await grant_subdomain(registry, 2, "chan-b", "my-app", required=False)

    name, claim = run(scenario())
    assert name != "my-app" and SUBDOMAIN_RE.fullmatch(name)
    assert claim == Claim(True)


def test_the_same_token_gets_its_name_back_during_the_grace():
    async def scenario():
        registry = MemoryRegistry()
        await grant_subdomain(registry, 1, "chan-a", "my-app", required=True)
        await registry.release("my-app", "chan-a", 1, grace=60)
        return await grant_subdomain(registry, 1, "chan-c", "my-app", required=True)

    assert run(scenario())[0] == "my-app"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("admin", AuthRefusal.SUBDOMAIN_BLOCKED),
        ("www", AuthRefusal.SUBDOMAIN_BLOCKED),
        ("Bad_Name", AuthRefusal.SUBDOMAIN_INVALID),
    ],
)
def test_a_blocked_or_invalid_name_is_refused_when_required_and_skipped_when_not(name, code):
    async def scenario():
        registry = MemoryRegistry()
        with pytest.raises(NameRefused) as refused:
            await grant_subdomain(registry, 1, "chan-a", name, required=True)
        fallback, _ = await grant_subdomain(registry, 1, "chan-b", name, required=False)
        return refused.value, fallback

    refused, fallback = run(scenario())
    assert refused.code == code
    assert fallback != name


def test_a_name_reserved_for_another_token_is_refused_and_granted_to_its_own():
    async def reserved_for(name: str) -> int | None:
        return 7 if name == "acme" else None

    async def scenario():
        registry = MemoryRegistry()
        with pytest.raises(NameRefused) as refused:
            await grant_subdomain(
                registry, 1, "chan-a", "acme", required=True, reserved_for=reserved_for
            )
        granted = await grant_subdomain(
            registry, 7, "chan-b", "acme", required=True, reserved_for=reserved_for
        )
        return refused.value, granted[0]

    refused, granted = run(scenario())
    assert refused.code == AuthRefusal.SUBDOMAIN_RESERVED
    assert granted == "acme"


def test_generated_names_skip_blocked_ones(monkeypatch):
    """A random draw that lands on a blocked name is drawn again."""
    draws = iter(["static", "status", "k3v9q2"])
    monkeypatch.setattr(names, "random_subdomain", lambda: next(draws))
    name, _ = run(grant_subdomain(MemoryRegistry(), 1, "chan-a", None, required=False))
    assert name == "k3v9q2"
