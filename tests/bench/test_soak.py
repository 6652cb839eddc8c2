"""The soak's own parts: its local server and checks, its churn windows, its verdict.

The soak itself (``make soak``) runs for minutes and is not part of the tests.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

import pytest

from bench.soak import traffic
from bench.soak.fleet import Windows
from bench.soak.local import BLOCK, pattern, pattern_digest
from bench.soak.metrics import summarize
from harness import PYTHON, UPSTREAM_RE, Server, clean_environ

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def local() -> Iterator[Server]:
    argv = [PYTHON, "-m", "bench.soak.local", "--port", "0"]
    server = Server("soak-local", argv, clean_environ({}), ready=UPSTREAM_RE)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_a_download_is_its_pattern_block_after_block() -> None:
    """The pattern sent in blocks hashes to the digest the traffic expects."""
    size = 3 * BLOCK + 123
    body = b"".join(pattern(min(BLOCK, size - at), 5, at) for at in range(0, size, BLOCK))
    assert hashlib.sha256(body).hexdigest() == pattern_digest(size, 5)
    assert pattern_digest(size, 5) != pattern_digest(size, 6)


@pytest.mark.parametrize("kind", sorted(traffic.OPERATIONS))
def test_every_operation_passes_its_own_checks_against_the_local_server(
    local: Server, kind: str
) -> None:
    """Straight to the local server, each kind of operation gets the answer it checks for."""
    rng = random.Random(kind)
    for _ in range(4):
        assert traffic.OPERATIONS[kind](local.port, "soak.localhost", rng) > 0


def test_a_failure_is_on_purpose_only_while_its_tunnel_was_down() -> None:
    """A request overlapping a churn of its tunnel is explained by it; others are not."""
    windows = Windows()
    windows.down("abc123", 10.0)
    windows.up("abc123", 12.0)
    windows.down("gone00", 20.0)
    assert windows.explain("abc123", 9.0, 10.5)
    assert windows.explain("abc123", 11.0, 11.5)
    assert not windows.explain("abc123", 12.5, 13.0)
    assert not windows.explain("abc123", 8.0, 9.5)
    assert windows.explain("gone00", 25.0, 26.0)
    assert not windows.explain("other0", 10.0, 30.0)


def _sample(phase: str, t: float, rss: float, keys: int, held: int = 0) -> dict[str, Any]:
    server = {
        "rss_mb": rss,
        "fds": 40,
        "fds_no_redis": 30,
        "tasks": 100,
        "connections": 10,
        "budget_held": held,
        "redis_conns": 10,
    }
    return {
        "t": t,
        "phase": phase,
        "live_tunnels": 20,
        "processes": {"server-a": server},
        "redis": {"tunnel_keys": keys, "other_keys": 0, "clients_total": 5},
    }


def test_the_verdict_compares_the_final_sample_with_the_baseline() -> None:
    """RSS may grow by 20 MB; registry keys must end at the live tunnels; budget at 0."""
    samples = [
        _sample("baseline", 0, 100.0, 20),
        _sample("run", 50, 180.0, 25, held=4096),
        _sample("final", 100, 119.0, 20),
    ]
    rows = {(r.owner, r.figure): r for r in summarize(samples, {})}
    assert rows["server-a", "rss_mb"].ok
    assert rows["server-a", "rss_mb"].max == 180.0
    assert rows["redis", "tunnel_keys"].ok
    assert rows["server-a", "budget_held"].ok
    assert rows["server-a", "fds"].ok is None  # shown, not judged

    samples[-1] = _sample("final", 100, 121.0, 21, held=1)
    rows = {(r.owner, r.figure): r for r in summarize(samples, {})}
    assert rows["server-a", "rss_mb"].ok is False
    assert rows["redis", "tunnel_keys"].ok is False
    assert rows["server-a", "budget_held"].ok is False
