"""A pytest fixture for testing through a real tunnel (webhooks, OAuth callbacks).

Enable it with ``pytest_plugins = ["client.pytest_plugin"]`` in your top-level
``conftest.py`` (or ``-p client.pytest_plugin``); then::

    def test_github_webhook(luminet_tunnel, live_server):
        tunnel = luminet_tunnel(live_server.port)
        register_webhook(f"{tunnel.public_url}/hooks/github")
        ...

``luminet_tunnel(port, **options)`` takes ``client.tunnel``'s options;
the server and token come from ``TUNNEL_SERVER`` and ``TUNNEL_TOKEN`` unless
given. Every tunnel a test opens is closed when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .api import OpenTunnel, tunnel


@pytest.fixture
def luminet_tunnel() -> Iterator[Callable[..., OpenTunnel]]:
    opened: list[OpenTunnel] = []

    def open_one(port: int, **options: Any) -> OpenTunnel:
        opened_tunnel = tunnel(port, **options)
        opened.append(opened_tunnel)
        return opened_tunnel

    yield open_one
    for each in opened:
        each.close()
