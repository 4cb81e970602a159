"""Unlocks inside the power budget: a slot held for the pulse, staggered on the wire."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from drivers.kerong.transaction import COMMAND, NotYet, Transactions
from drivers.power import PowerBudget

# Loop time an unlock frame of each power budget last went on the wire: the budget
# spaces the slots it hands out, but a slot taken can wait for the bus, so the stagger
# is checked again when the frame is written (buses sharing a budget share this).
_WIRE_STARTS: weakref.WeakKeyDictionary[PowerBudget, float] = weakref.WeakKeyDictionary()


class Pulser:
    """Sends the unlock frames of one bus as actuations: each takes a slot of
    ``budget`` before it queues for the bus, and keeps it for ``pulse_s`` (the board
    energises the lock that long) after the frame is on the wire, without holding the
    bus. ``poll_soon(board)`` is called when a pulse is over."""

    def __init__(
        self,
        tx: Transactions,
        budget: PowerBudget,
        pulse_s: float,
        poll_soon: Callable[[int], None],
    ) -> None:
        self._tx = tx
        self._budget = budget
        self._pulse_s = pulse_s
        self._poll_soon = poll_soon

    async def pulse(self, request: bytes, board: int) -> None:
        """Send an unlock inside a power slot held until the board's pulse is over, no
        sooner than ``stagger_s`` after the last unlock of the same budget went on the
        wire, and read ``board`` as soon as the pulse is over (the caller confirms the
        door by its status, also when polls are seconds apart). Raises
        ``BusUnavailable`` (nothing was sent)."""
        release = await self._budget.take()
        loop = asyncio.get_running_loop()
        energised_until: float | None = None

        def sent() -> None:
            nonlocal energised_until
            now = _WIRE_STARTS[self._budget] = loop.time()
            energised_until = now + self._tx.wire_time(request) + self._pulse_s
            loop.call_at(energised_until, self._poll_soon, board)

        try:
            while True:
                try:
                    await self._tx.transact(
                        request,
                        COMMAND,
                        unlock=(board, self._pulse_s),
                        on_sent=sent,
                        gate=self._stagger_left,
                    )
                    break
                except NotYet as not_yet:
                    # Another unlock went on the wire while this one waited for the bus.
                    await asyncio.sleep(not_yet.wait_s)
            assert energised_until is not None
            # The board energises the lock now: the slot stays taken, the bus does
            # not (polls go on).
            await asyncio.sleep(max(energised_until - loop.time(), 0))
        finally:
            if energised_until is None or loop.time() >= energised_until:
                release()  # nothing sent, or the pulse is over
            else:
                loop.call_at(energised_until, release)  # cancelled mid-pulse

    def _stagger_left(self) -> float:
        """Seconds until an unlock may go on the wire under the budget's stagger."""
        last = _WIRE_STARTS.get(self._budget)
        if last is None:
            return 0.0
        return last + self._budget.stagger_s - asyncio.get_running_loop().time()
