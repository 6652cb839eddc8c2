"""What the command line chose for the inspector (``--inspect-port``, ``--no-inspect`` ...)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError

#: ngrok's port: scripts written for ngrok look here first.
DEFAULT_PORT = 4040
#: Ports tried from the first one while each is taken (4040, 4041, ...), as ngrok does.
PORT_ATTEMPTS = 20
#: Exchanges and WebSockets kept, newest first; older ones are dropped whole.
DEFAULT_ENTRIES = 500
#: Mebibytes of headers, bodies and messages kept in all.
DEFAULT_MEGABYTES = 64
#: Bytes of each body kept; the rest is counted, not kept, and the page says so.
BODY_CAP = 1 << 20


@dataclass(frozen=True)
class InspectorSettings:
    enabled: bool = True
    #: First port tried; 0 lets the kernel choose one (tests).
    port: int = DEFAULT_PORT
    max_entries: int = DEFAULT_ENTRIES
    max_bytes: int = DEFAULT_MEGABYTES << 20

    @property
    def body_cap(self) -> int:
        """Bytes kept of each body: an entry's two bodies always fit the store together."""
        return min(BODY_CAP, self.max_bytes // 2)


def inspector_settings(
    *, enabled: bool, port: int, max_entries: int, megabytes: float
) -> InspectorSettings:
    """Check the flags and return the settings; ConfigError names the flag that is wrong."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--inspect-port must be between 0 and 65535, not {port}")
    if not 1 <= max_entries <= 100_000:
        raise ConfigError("--inspect-entries must be between 1 and 100000")
    if not 1 <= megabytes <= 64 * 1024:
        raise ConfigError("--inspect-mb must be between 1 and 65536")
    return InspectorSettings(
        enabled=enabled, port=port, max_entries=max_entries, max_bytes=int(megabytes * (1 << 20))
    )
