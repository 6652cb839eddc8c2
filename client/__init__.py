"""The Luminet client: ``python -m client --port 3000``, or from Python::

    import client

    with client.tunnel(port=8000) as tunnel:
        print(tunnel.public_url)

(``client.api``; loaded on first use, so the server, which shares
``client.protocol``, never imports the client's machinery.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import OpenTunnel, tunnel

__all__ = ["OpenTunnel", "tunnel"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'client' has no attribute {name!r}")
