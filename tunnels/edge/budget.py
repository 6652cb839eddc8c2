"""The bytes of public traffic one server process holds in memory, per tunnel and in all.

Windows bound what each stream holds, but not how many streams there are (issue 8:
150 queued uploads took a server from 230 to 944 MB; 20 public WebSockets each
sending an unfinished 16 MiB message added 310 to 440 MB). Each place that holds
what a public caller sent, or a local server's message on its way out, opens an
:class:`Account` with the process's :class:`MemoryBudget` and charges it:

- a request body waiting for the tunnel's window (``tunnelsite.server``'s pipe):
  over budget, the connection stops reading until its pipe is empty, so memory
  waits on TCP instead of growing;
- a public WebSocket message being reassembled by daphne, or waiting for the
  local server's credit, and a local server's message being reassembled for the
  public client (``sockets``): nothing can pause those, so the socket over
  budget is closed with 1013 (try again later).

Tunnels are told apart by their host, the key both the server's protocols and the
application see.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


def budget_key(host: str) -> str:
    """The key a tunnel's bytes are counted under: its host, without port, lower-case."""
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal: the port, if any, follows the bracket
        return name.split("]", 1)[0] + "]"
    return name.split(":", 1)[0].rstrip(".")


@dataclass(frozen=True)
class BudgetLimits:
    #: Bytes held for all tunnels together; 0 for no limit.
    total: int = 512 * 1024 * 1024
    #: Bytes held for one tunnel; 0 for no limit.
    per_tunnel: int = 64 * 1024 * 1024


class MemoryBudget:
    """Counts held bytes per key and in all. One per process, on its event loop."""

    def __init__(self, limits: BudgetLimits | None = None) -> None:
        self.limits = limits or BudgetLimits()
        self._held: Counter[str] = Counter()
        self.total = 0

    def held(self, key: str) -> int:
        return self._held[key]

    def over(self, key: str) -> bool:
        """Whether ``key``'s tunnel, or the process, holds more than its limit."""
        total, per_tunnel = self.limits.total, self.limits.per_tunnel
        return bool((total and self.total > total) or (per_tunnel and self._held[key] > per_tunnel))

    def account(self, key: str) -> Account:
        return Account(self, key)

    def _add(self, key: str, size: int) -> None:
        self._held[key] += size
        self.total += size
        if self._held[key] <= 0:
            del self._held[key]


class Account:
    """What one holder (a request body, a WebSocket) has charged; :meth:`close` returns it all."""

    def __init__(self, budget: MemoryBudget, key: str) -> None:
        self._budget = budget
        self.key = key
        self.held = 0

    def charge(self, size: int) -> bool:
        """Count ``size`` more bytes held; False if that puts the tunnel or process over."""
        self.held += size
        self._budget._add(self.key, size)
        return not self._budget.over(self.key)

    def release(self, size: int) -> None:
        size = min(size, self.held)
        self.held -= size
        self._budget._add(self.key, -size)

    @property
    def over(self) -> bool:
        return self._budget.over(self.key)

    def close(self) -> None:
        """Release all that is held (the account may be charged again after)."""
        self.release(self.held)


#: The budget of a process that configured none: no limits (tests of single parts).
UNLIMITED = MemoryBudget(BudgetLimits(total=0, per_tunnel=0))


def scope_budget(scope: dict) -> MemoryBudget:
    """The server's budget, which ``tunnelsite.server`` puts in every scope."""
    return scope.get("luminet.budget", UNLIMITED)
