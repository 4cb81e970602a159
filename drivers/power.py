"""A power budget: how many actuators (lock coils, door motors) may draw current at once.

Lock solenoids and motors draw their largest current when they start. A locker's
power supply is sized for a few of them, not for every door at once: the budget
lets at most ``max_concurrent`` actuations run together and spaces their starts
at least ``stagger_s`` apart, so the inrush currents never add up. One budget per
power supply; drivers sharing a supply share one budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import structlog

log = structlog.get_logger(__name__)


class PowerBudget:
    """At most ``max_concurrent`` holders at once; starts spaced >= ``stagger_s`` apart.

    Waiters are served in arrival order. ``clock`` measures the spacing, in seconds;
    it must advance with real time (the waits are asyncio sleeps). The constructor
    raises ``ValueError`` for ``max_concurrent < 1`` or ``stagger_s < 0``.
    """

    def __init__(
        self,
        max_concurrent: int,
        stagger_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, not {max_concurrent}")
        if stagger_s < 0:
            raise ValueError(f"stagger_s must be >= 0, not {stagger_s}")
        self._max = max_concurrent
        self._stagger = stagger_s
        self._clock = clock
        # Only the task holding the gate may take a slot, so it is the only one that
        # ever waits for a slot to free up and the gate's FIFO order is the order of
        # service. Nothing is taken before the last await: a cancelled waiter leaks nothing.
        self._gate = asyncio.Lock()
        self._freed = asyncio.Event()
        self._holders = 0
        self._last_start: float | None = None

    @property
    def max_concurrent(self) -> int:
        """Slots at most held at once."""
        return self._max

    @property
    def stagger_s(self) -> float:
        """Least time between two starts, seconds."""
        return self._stagger

    @property
    def last_start(self) -> float | None:
        """When the newest slot was granted, by ``clock`` (seconds); None before any."""
        return self._last_start

    @property
    def in_use(self) -> int:
        """How many slots are held right now."""
        return self._holders

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block (released also on error/cancel)."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def take(self) -> Callable[[], None]:
        """Take one slot and return its release, for a slot that outlives the block that
        took it (a lock the board keeps energised after the caller went away).

        The release may be called any number of times; the first frees the slot. A
        caller cancelled while waiting holds nothing.
        """
        await self._acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release()

        return release

    async def _acquire(self) -> None:
        async with self._gate:
            while self._holders >= self._max:
                self._freed.clear()
                await self._freed.wait()
            if self._last_start is not None:
                # A loop: asyncio timers may fire a hair early, and the clock may
                # differ from the loop's; the spacing is a promise, not a hope.
                while (wait := self._last_start + self._stagger - self._clock()) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(wait)
            # No await since the capacity check, and only the gate holder takes
            # slots: the slot is still free.
            self._holders += 1
            self._last_start = self._clock()
            log.debug("power.slot_taken", in_use=self._holders, max=self._max)

    def _release(self) -> None:
        self._holders -= 1
        self._freed.set()
