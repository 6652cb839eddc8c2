"""One tunnel carries many requests at once; a slow one holds up nobody."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from . import rawclient
from .conftest import Tunnel
from .localserver import Reply

pytestmark = pytest.mark.timeout(60)

PARALLEL = 20
UPSTREAM_SECONDS = 1.0


def test_parallel_slow_requests_overlap(tunnel: Tunnel, uid: str) -> None:
    """20 requests that each take 1 s upstream finish together in well under 20 s."""
    for i in range(PARALLEL):
        body = f"answer {i} ".encode() * (i + 1)
        tunnel.local.route(f"/{uid}/slow/{i}", Reply(body=body, delay=UPSTREAM_SECONDS))

    def one(i: int) -> rawclient.Response:
        return rawclient.request(tunnel.port, "GET", f"/{uid}/slow/{i}", tunnel.host, timeout=30)

    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL) as pool:
        responses = list(pool.map(one, range(PARALLEL)))
    elapsed = time.monotonic() - started

    for i, response in enumerate(responses):
        assert (response.status, response.body) == (200, f"answer {i} ".encode() * (i + 1))
    assert elapsed < 5, f"{PARALLEL} x {UPSTREAM_SECONDS} s requests took {elapsed:.1f} s"


def test_slow_request_does_not_hold_up_others(tunnel: Tunnel, uid: str) -> None:
    """While one request waits on a slow local answer, others through the tunnel complete."""
    tunnel.local.route(f"/{uid}/stuck", Reply(body=b"late", delay=3))
    results: list[rawclient.Response] = []
    slow = threading.Thread(
        target=lambda: results.append(
            rawclient.request(tunnel.port, "GET", f"/{uid}/stuck", tunnel.host, timeout=30)
        )
    )
    slow.start()
    try:
        tunnel.local.wait_for(lambda r: r.path == f"/{uid}/stuck")
        started = time.monotonic()
        for i in range(5):
            fast = rawclient.request(tunnel.port, "GET", f"/{uid}/fast/{i}", tunnel.host)
            assert (fast.status, fast.body) == (200, b"ok")
        elapsed = time.monotonic() - started
    finally:
        slow.join(timeout=30)
    assert elapsed < 2.5, f"5 fast requests took {elapsed:.1f} s behind a slow one"
    assert [(r.status, r.body) for r in results] == [(200, b"late")]


def test_local_connections_are_kept_alive(tunnel: Tunnel, uid: str) -> None:
    """Sequential requests reuse the client's connections to the local server."""
    rawclient.request(tunnel.port, "GET", f"/{uid}/warm", tunnel.host)
    opened = tunnel.local.connections_opened
    for i in range(5):
        response = rawclient.request(tunnel.port, "GET", f"/{uid}/again/{i}", tunnel.host)
        assert (response.status, response.body) == (200, b"ok")
    assert tunnel.local.connections_opened == opened
