"""A server's connection budget, driven with a synthetic clock and byte counter (the logic
alone; downloads against real servers that push back are in test_provision_parallel.py)."""

from __future__ import annotations

from collections.abc import Callable

from genstack.provision.connections import BudgetConfig, ConnectionBudget


def run(
    budget: ConnectionBudget,
    rate_for: Callable[[int], float],
    seconds: float,
    *,
    start: float = 0.0,
    total: int = 0,
    tick: float = 0.25,
) -> tuple[list[int], float, int]:
    """Limits at each whole second while ``rate_for(limit)`` bytes/s come in, all of the
    allowed connections busy."""
    now, limits = start, []
    for step in range(round(seconds / tick)):
        now += tick
        total += int(rate_for(budget.limit) * tick)
        budget.observe(now, total, busy=budget.limit)
        if (step + 1) % round(1 / tick) == 0:
            limits.append(budget.limit)
    return limits, now, total


def test_every_connection_from_the_start_and_kept_on_a_flat_link() -> None:
    budget = ConnectionBudget(BudgetConfig(connections=16), now=0.0)
    assert budget.limit == 16
    # Loopback or a saturated link: more streams do not add, and they are not taken away.
    limits, _, _ = run(budget, lambda n: 900e6, 20)
    assert set(limits) == {16}


def test_pushback_halves_once_per_burst_and_holds_for_retry_after() -> None:
    budget = ConnectionBudget(BudgetConfig(connections=16, hold_s=5), now=0.0)
    for _ in range(12):  # twelve requests refused in the same moment: one signal
        budget.pushback(1.0, retry_after_s=None, reason="HTTP 503")
    assert budget.limit == 8
    budget.pushback(3.0, retry_after_s=20, reason="HTTP 429")  # it goes on: halve again
    assert budget.limit == 4
    # Retry-After 20 s: nothing is added back before t=23.
    limits, now, total = run(budget, lambda n: n * 8e6, 19, start=3.0)
    assert set(limits) == {4}
    limits, _, _ = run(budget, lambda n: n * 8e6, 30, start=now, total=total)
    assert max(limits) > 4


def test_after_pushback_connections_come_back_but_stop_below_the_level_that_failed() -> None:
    budget = ConnectionBudget(BudgetConfig(connections=16, hold_s=5, probe_step=2), now=0.0)
    budget.pushback(0.0, reason="reset")  # 16 was too many
    assert budget.limit == 8
    limits, now, total = run(budget, lambda n: n * 8e6, 4)
    assert limits == [8, 8, 8, 8]  # holding
    limits, now, total = run(budget, lambda n: n * 8e6, 6, start=now, total=total)
    # Probed back up a step a couple of seconds apart, below the ceiling of 16 ...
    assert limits == sorted(limits) and 8 < limits[-1] <= 15
    # ... and 16 tried again only later, then kept while nothing pushes back.
    limits, _, _ = run(budget, lambda n: n * 8e6, 30, start=now, total=total)
    assert limits[-1] == 16


def test_a_server_that_refuses_above_some_count_is_probed_less_and_less_often() -> None:
    budget = ConnectionBudget(BudgetConfig(connections=16, hold_s=2, probe_step=4), now=0.0)
    now, total, refusals, at = 0.0, 0, [], []
    for _ in range(4 * 200):  # 200 s of a server that refuses above 12 connections
        now += 0.25
        total += int(min(budget.limit, 12) * 8e6 * 0.25)
        budget.observe(now, total, busy=budget.limit)
        if budget.limit > 12:
            refusals.append(now)
            budget.pushback(now, reason="HTTP 429")
        at.append(budget.limit)
    first, last = (sum(1 for t in refusals if lo <= t < lo + 50) for lo in (0, 150))
    assert last < first
    assert at[-200:].count(12) > 150  # most of the time at the most it allows


def test_a_step_that_moves_fewer_bytes_is_undone() -> None:
    budget = ConnectionBudget(BudgetConfig(connections=16, hold_s=1, probe_step=4), now=0.0)
    budget.pushback(0.0, reason="HTTP 503")
    assert budget.limit == 8
    # Above 8 connections the server (or the disk) slows down: 12 move less than 8 did.
    limits, _, _ = run(budget, lambda n: 400e6 if n <= 8 else 250e6, 12)
    assert 12 in limits  # tried
    assert limits[-1] == 8  # and given back


def test_nothing_is_judged_while_nothing_moves_or_nothing_is_in_use() -> None:
    budget = ConnectionBudget(BudgetConfig(connections=16, hold_s=1), now=0.0)
    budget.pushback(0.0, reason="HTTP 503")
    for second in range(1, 10):  # connecting, or waiting for the next file: no bytes
        budget.observe(float(second), 0, busy=8)
    assert budget.limit == 8
    for second in range(10, 20):  # bytes move but fewer connections are in use than allowed
        budget.observe(float(second), second * 10**8, busy=3)
    assert budget.limit == 8
