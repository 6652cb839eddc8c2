"""The memory budget: bytes held per tunnel and in all, and handed back."""

from __future__ import annotations

import pytest

from tunnels.edge.budget import BudgetLimits, MemoryBudget, budget_key


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("abc.Tunnel.example.com:443", "abc.tunnel.example.com"),
        ("abc.tunnel.example.com.", "abc.tunnel.example.com"),
        ("[::1]:8000", "[::1]"),
        ("", ""),
    ],
)
def test_a_tunnel_is_counted_under_its_bare_host(host, key):
    assert budget_key(host) == key


def test_a_tunnel_over_its_share_does_not_hold_back_another():
    budget = MemoryBudget(BudgetLimits(total=100, per_tunnel=10))
    a, b = budget.account("a"), budget.account("b")
    assert a.charge(10)
    assert not a.charge(1)
    assert budget.over("a") and not budget.over("b")
    assert b.charge(10)
    a.release(5)
    assert not a.over
    assert (budget.held("a"), budget.total) == (6, 16)


def test_the_process_limit_holds_across_tunnels():
    budget = MemoryBudget(BudgetLimits(total=15, per_tunnel=10))
    assert budget.account("a").charge(10)
    late = budget.account("b")
    assert not late.charge(6)
    assert budget.over("c")  # every tunnel waits while the process is over


def test_closing_an_account_hands_back_all_it_holds_and_no_more():
    budget = MemoryBudget(BudgetLimits(total=100, per_tunnel=100))
    one, two = budget.account("t"), budget.account("t")
    one.charge(30)
    two.charge(20)
    one.release(50)  # more than it holds: only its own 30 come back
    assert budget.held("t") == 20
    two.close()
    two.close()
    assert (budget.held("t"), budget.total) == (0, 0)
    assert two.charge(5)  # an account goes on after close
    assert budget.total == 5


def test_zero_means_no_limit():
    budget = MemoryBudget(BudgetLimits(total=0, per_tunnel=0))
    assert budget.account("a").charge(10**12)
