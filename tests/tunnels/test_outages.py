"""Waiting out a Redis outage (``tunnels.outages``), with probes and receives of the test's
own (seams of ours); the real Redis restart is in tests/e2e/test_redis_outage.py."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tunnels.outages import RedisGate, ThrottledWarning, is_outage, receive_through_outages


def test_connection_failures_are_outages_and_bugs_are_not() -> None:
    assert is_outage(RedisConnectionError("Connection refused"))
    assert is_outage(ConnectionResetError())
    assert not is_outage(ValueError("a bug"))


def test_many_waiters_share_one_probe_until_redis_answers() -> None:
    """A hundred receivers waiting on a Redis that is down cost one probe an interval,
    are all let through once it answers, and leave no task behind."""

    async def scenario() -> tuple[int, float, int]:
        probes = 0
        answers_at = time.monotonic() + 0.25

        async def probe() -> None:
            nonlocal probes
            probes += 1
            if time.monotonic() < answers_at:
                raise RedisConnectionError("down")

        gate = RedisGate(probe, interval=0.02)
        await gate.wait()  # up: no probe at all
        assert probes == 0
        gate.down()
        before = len(asyncio.all_tasks())
        async with asyncio.timeout(5):
            await asyncio.gather(*(gate.wait() for _ in range(100)))
        let_through = time.monotonic()
        await asyncio.sleep(0)  # the prober's last step
        return probes, let_through - answers_at, len(asyncio.all_tasks()) - before

    probes, late, tasks_left = asyncio.run(scenario())
    assert 10 <= probes <= 16, probes  # about 0.25 s / 0.02 s, not 100 per interval
    assert 0 <= late < 0.1
    assert tasks_left == 0


def test_a_probe_that_fails_otherwise_lets_the_receivers_meet_the_error() -> None:
    async def scenario() -> None:
        async def probe() -> None:
            raise ValueError("not an outage")

        gate = RedisGate(probe, interval=0.01)
        gate.down()
        async with asyncio.timeout(5):
            await gate.wait()

    asyncio.run(scenario())


def test_a_receive_is_tried_again_through_an_outage_and_paced() -> None:
    """Failures that come at once are tried again at most every ``pause`` seconds; the
    message that finally comes is returned."""

    async def scenario() -> tuple[dict, list[float]]:
        tries: list[float] = []

        async def receive() -> dict:
            tries.append(time.monotonic())
            if len(tries) < 4:
                raise RedisConnectionError("down")
            return {"type": "tunnel.open"}

        async with asyncio.timeout(5):
            return await receive_through_outages(receive, pause=0.05), tries

    message, tries = asyncio.run(scenario())
    assert message == {"type": "tunnel.open"}
    # The first failure is tried again at once: it may be one stale connection.
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries[1:])]
    assert all(gap >= 0.045 for gap in gaps), gaps


def test_a_receive_that_fails_for_another_reason_is_not_retried() -> None:
    async def scenario() -> None:
        async def receive() -> dict:
            raise ValueError("a bug")

        await receive_through_outages(receive, pause=0.01)

    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(scenario())


def test_a_failure_every_tunnel_meets_is_logged_once_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis outage fails every tunnel's heartbeat at once: one line per interval,
    saying how many failures it stands for, not one per tunnel and heartbeat."""
    now = [100.0]
    warning = ThrottledWarning("registry refresh failed", every=30.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="tunnels.outages"):
        for _ in range(50):
            warning.failed(RedisConnectionError("Connection refused"))
        now[0] += 29.0
        warning.failed(RedisConnectionError("Connection refused"))
        assert len(caplog.records) == 1
        assert "1 in all since the last line" in caplog.records[0].getMessage()
        now[0] += 1.0
        warning.failed(RedisConnectionError("Connection refused"))
    assert len(caplog.records) == 2
    assert "51 in all since the last line" in caplog.records[1].getMessage()
