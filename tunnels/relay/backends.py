"""What streams, sessions and bridges talk to, passed in so tests can give their own."""

from __future__ import annotations

from dataclasses import dataclass

from channels.layers import BaseChannelLayer, get_channel_layer

from tunnels.registry import Registry, get_registry

from .payloads import Payloads, get_payloads


@dataclass(frozen=True)
class Backends:
    """The channel layer, the registry of live tunnels and the payload store."""

    layer: BaseChannelLayer
    registry: Registry
    payloads: Payloads

    @classmethod
    def current(cls) -> Backends:
        """The process's backends for the current settings."""
        return cls(get_channel_layer(), get_registry(), get_payloads())
