"""The pulse gap: a lock is pulsed at most once per ``gap_s``, whoever asks.

Every pulse the agent makes passes ``Hardware.release``, so the gap sits there:
the local API, the cloud's channel, open-all, selftest, scenarios and the jam
retry all reach it. A pulse that would come sooner waits for its turn when that
is at most ``wait_s`` away, and is refused as ``Busy`` otherwise (retryable).
Turns are reserved before the wait, so callers of one lock queue up a gap apart;
a reservation whose pulse never came (cancelled, the port closed) still counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agent.config import Side
from agent.locker.errors import Busy

WAIT_S = 5.0  # the longest a command waits for its lock's turn before it is told BUSY


class PulseGap:
    """When each lock (cabinet key, side) may next be pulsed, in monotonic seconds."""

    def __init__(
        self, gap_s: float, *, wait_s: float = WAIT_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.gap_s = gap_s
        self._wait_s = wait_s
        self._clock = clock
        self._next: dict[tuple[int, Side], float] = {}

    async def turn(self, key: int, side: Side) -> None:
        """Wait for the lock's turn and take it; ``Busy`` when it is over ``wait_s`` away."""
        now = self._clock()
        at = max(now, self._next.get((key, side), now))
        if at - now > self._wait_s:
            raise Busy(
                f"cabinet {key} {side} lock: pulsed less than {self.gap_s:g} s ago",
                retry_after_s=at - now,
            )
        self._next[(key, side)] = at + self.gap_s
        if at > now:
            await asyncio.sleep(at - now)
