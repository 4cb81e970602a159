"""PowerBudget on a real loop with small values: overlap and spacing are checked from
recorded timestamps (lower bounds only), cancellation must not leak a slot."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from drivers.power import PowerBudget

WAIT = 5.0  # only bounds how long a broken test hangs


async def holders(budget: PowerBudget, count: int, hold_s: float):
    """Start `count` holders at once; return (start, end, index) per holder in start order.
    A start is the grant's time as the budget took it (a loaded host may pause the
    process between the grant and the body's first line)."""
    spans: list[tuple[float, float, int]] = []

    async def one(i: int) -> None:
        async with budget.slot():
            start = budget.last_start
            await asyncio.sleep(hold_s)
            spans.append((start, time.monotonic(), i))

    async with asyncio.timeout(WAIT):
        await asyncio.gather(*(one(i) for i in range(count)))
    return sorted(spans)


def max_overlap(spans) -> int:
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    # ends sort before starts at equal times: a slot freed and retaken is no overlap
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


async def test_at_most_max_concurrent_holders():
    budget = PowerBudget(max_concurrent=2, stagger_s=0.0)
    spans = await holders(budget, 6, 0.02)
    assert len(spans) == 6
    assert max_overlap(spans) == 2
    assert budget.in_use == 0


async def test_starts_are_staggered():
    stagger = 0.02
    budget = PowerBudget(max_concurrent=4, stagger_s=stagger)
    spans = await holders(
        budget, 4, 0.25
    )  # held long past the stagger: overlap survives a loaded machine
    starts = [s for s, _, _ in spans]
    for earlier, later in itertools.pairwise(starts):
        assert later - earlier >= stagger - 1e-9  # the grants, by the budget's clock
    assert max_overlap(spans) >= 2  # staggered, yet running together


async def test_waiters_are_served_in_arrival_order():
    budget = PowerBudget(max_concurrent=1, stagger_s=0.0)
    order: list[int] = []

    async def one(i: int) -> None:
        async with budget.slot():
            order.append(i)
            await asyncio.sleep(0.001)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0)  # each arrives after the previous one
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_cancelled_waiter_does_not_leak_a_slot():
    budget = PowerBudget(max_concurrent=1, stagger_s=0.0)
    release = asyncio.Event()
    held = asyncio.Event()

    async def holder() -> None:
        async with budget.slot():
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with budget.slot():
            pytest.fail("the cancelled waiter must never get the slot")

    first = asyncio.create_task(holder())
    await held.wait()
    second = asyncio.create_task(waiter())
    third = asyncio.create_task(waiter())
    await asyncio.sleep(0.01)
    second.cancel()
    third.cancel()
    await asyncio.gather(second, third, return_exceptions=True)
    assert budget.in_use == 1
    release.set()
    await first
    assert budget.in_use == 0
    async with asyncio.timeout(WAIT), budget.slot():
        assert budget.in_use == 1
    assert budget.in_use == 0


async def test_cancelled_during_stagger_wait_does_not_leak():
    now = [0.0]  # a frozen clock: the stagger wait cannot end by itself
    budget = PowerBudget(max_concurrent=2, stagger_s=1000.0, clock=lambda: now[0])
    async with budget.slot():
        waiting = asyncio.create_task(_enter(budget))
        await asyncio.sleep(0.01)  # inside the stagger wait now
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert budget.in_use == 1
        now[0] += 1000.0
        async with asyncio.timeout(WAIT), budget.slot():
            assert budget.in_use == 2
    assert budget.in_use == 0


async def _enter(budget: PowerBudget) -> None:
    async with budget.slot():
        pass


async def test_error_in_block_releases_the_slot():
    budget = PowerBudget(max_concurrent=1, stagger_s=0.0)
    with pytest.raises(RuntimeError):
        async with budget.slot():
            raise RuntimeError("boom")
    assert budget.in_use == 0
    async with asyncio.timeout(WAIT), budget.slot():
        pass


async def test_spacing_follows_the_given_clock():
    # A clock far ahead of the last start: no waiting at all, whatever stagger_s says.
    now = [0.0]
    budget = PowerBudget(max_concurrent=2, stagger_s=1000.0, clock=lambda: now[0])
    async with budget.slot():
        now[0] += 1000.0
        async with asyncio.timeout(WAIT), budget.slot():
            assert budget.in_use == 2


@pytest.mark.parametrize(("max_concurrent", "stagger_s"), [(0, 0.1), (-1, 0.1), (1, -0.1)])
def test_rejects_bad_settings(max_concurrent, stagger_s):
    with pytest.raises(ValueError):
        PowerBudget(max_concurrent, stagger_s)


async def test_take_gives_a_release_that_frees_the_slot_once():
    budget = PowerBudget(1, 0)
    release = await budget.take()
    assert budget.in_use == 1
    waiter = asyncio.create_task(budget.take())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    release()
    release()  # a second call frees nothing more
    second = await asyncio.wait_for(waiter, 1)
    assert budget.in_use == 1
    second()
    assert budget.in_use == 0
