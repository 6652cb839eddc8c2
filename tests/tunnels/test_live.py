"""The live tunnels list in memory: entries publish, expire and withdraw per channel."""

from __future__ import annotations

import asyncio

from tunnels import live


def entry(subdomain: str, channel: str, requests: int = 0) -> live.LiveTunnel:
    return live.LiveTunnel(
        subdomain, 1, "laptop", "127.0.0.1:5000", 0.0, requests, 0, 0, (), channel
    )


def test_a_newer_session_keeps_its_entry_when_the_older_one_withdraws(settings) -> None:
    """Withdrawing is per channel: a replaced session's end leaves its successor listed."""
    settings.REDIS_URL = None
    settings.LUMINET_REDIS_PREFIX = "live-test-a:"

    async def scenario() -> list[live.LiveTunnel]:
        await live.publish(entry("shop", "old"))
        await live.publish(entry("shop", "new", requests=2))
        await live.withdraw("shop", "old")
        return await live.list_live()

    assert asyncio.run(scenario()) == [entry("shop", "new", requests=2)]


def test_an_entry_not_refreshed_expires(settings) -> None:
    """Three missed heartbeats and a tunnel leaves the list (a crashed process)."""
    settings.REDIS_URL = None
    settings.LUMINET_REDIS_PREFIX = "live-test-b:"
    settings.LUMINET_HEARTBEAT_INTERVAL = 0.01

    async def scenario() -> tuple[int, int]:
        await live.publish(entry("gone", "c"))
        before = len(await live.list_live())
        await asyncio.sleep(0.05)  # past 3 x 0.01 s: the expiry itself is under test
        return before, len(await live.list_live())

    assert asyncio.run(scenario()) == (1, 0)


def test_a_tunnels_connections_are_one_row_adding_up_their_figures(settings) -> None:
    settings.REDIS_URL = None
    settings.LUMINET_REDIS_PREFIX = "live-test-sum:"
    first = live.LiveTunnel("pair", 1, "laptop", "127.0.0.1:5000", 10.0, 2, 5, 7, (), "a", "n1")
    second = live.LiveTunnel("pair", 1, "laptop", "127.0.0.1:5001", 11.0, 3, 1, 1, (), "b", "n2")

    async def scenario() -> list[live.LiveTunnel]:
        await live.publish(second)
        await live.publish(first)
        return [t for t in await live.list_live() if t.subdomain == "pair"]

    [row] = asyncio.run(scenario())
    assert (row.since, row.requests, row.bytes_in, row.bytes_out) == (10.0, 5, 6, 8)
    assert (row.connections, row.node) == (2, "n1, n2")
    assert row.client == "127.0.0.1:5000, 127.0.0.1:5001"
