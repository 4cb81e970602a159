"""The pulse gap: a lock is pulsed at most once per ``gap_s``, whoever asks.

Every pulse the agent makes passes ``Hardware.release``, so the gap sits there:
the local API, the cloud's channel, open-all, selftest, scenarios and the jam
retry all reach it. The gap runs from the end of one pulse (when the driver says
it is over, after any wait for a power slot) to the start of the next, at the gap
configured now: a reload that raises it covers the lock pulsed just before. A pulse
that would come sooner waits for its turn when that is at most ``wait_s`` away,
and is refused as ``Busy`` otherwise (retryable). One pulse at a time per lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from agent.config import Side
from agent.locker.errors import Busy

WAIT_S = 5.0  # the longest a command waits for its lock's turn before it is told BUSY


class PulseGap:
    """When each lock (cabinet key, side) was last pulsed, in monotonic seconds.

    The end of each lock's last pulse is kept, not the time of its next turn: the
    gap is added when asked, so a ``gap_s`` raised by a reload covers the lock
    pulsed just before it.
    """

    def __init__(
        self, gap_s: float, *, wait_s: float = WAIT_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.gap_s = gap_s
        self._wait_s = wait_s
        self._clock = clock
        self._ended: dict[tuple[int, Side], float] = {}
        self._locks: dict[tuple[int, Side], asyncio.Lock] = {}

    async def pulse(self, key: int, side: Side, act: Callable[[], Awaitable[None]]) -> None:
        """Run ``act`` (one pulse of the lock) in its turn; ``Busy`` when that is far off."""
        lock = (key, side)
        self._check(lock)
        async with self._locks.setdefault(lock, asyncio.Lock()):
            wait = self._check(lock)
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await act()
            finally:  # a pulse that failed half way may have energised the lock
                self._ended[lock] = self._clock()

    def _check(self, lock: tuple[int, Side]) -> float:
        ended = self._ended.get(lock)
        if ended is None:
            return 0.0
        wait = ended + self.gap_s - self._clock()
        if wait > self._wait_s:
            key, side = lock
            raise Busy(
                f"cabinet {key} {side} lock: pulsed less than {self.gap_s:g} s ago",
                retry_after_s=wait,
            )
        return wait
