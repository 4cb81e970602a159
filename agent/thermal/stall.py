"""Liveness of the thermal loop: the age of its last completed round (ADR 0011).

A control loop that catches its own exception and goes on is a dead loop that looks
alive (T-962 reflow oven #177): every round raising, the outputs off, and the API
still showing the last temperature and "cooling". So liveness is never "the task
runs" but "a round completed lately": past ``bound_s`` without one, the loop is
stalled, whatever it is doing; a watcher apart from the rounds says so.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class Liveness:
    """When the last round completed, and whether that is too long ago.

    ``clock``: monotonic seconds (the start counts as a round); too long: ``stall_s``
    (``[thermal] stall_s``) and at least ``lease_s()`` (the outputs' lease, asked each
    time: a slow 1-wire read is not a stall).
    """

    def __init__(
        self, clock: Callable[[], float], stall_s: float, lease_s: Callable[[], float]
    ) -> None:
        self._clock = clock
        self._stall_s = stall_s
        self._lease_s = lease_s
        self.last_round = clock()
        self.since: float | None = None  # when the stall was found; None: alive

    @property
    def stalled(self) -> bool:
        """Whether a stall was found and no round has completed since."""
        return self.since is not None

    def age_s(self) -> float:
        """Seconds since the last completed round."""
        return max(0.0, self._clock() - self.last_round)

    def bound(self) -> float:
        """Seconds without a completed round that make a stall."""
        return max(self._stall_s, self._lease_s())

    def reason(self) -> str | None:
        """Why the loop counts as stalled now, None while it is alive."""
        age, bound = self.age_s(), self.bound()
        if age <= bound:
            return None
        return f"thermal loop stalled: no round completed for {age:.0f} s (bound {bound:.0f} s)"

    def found(self) -> str | None:
        """The reason, the first time a stall is found (None otherwise): the watcher
        acts on it once."""
        why = self.reason()
        if why is None or self.since is not None:
            return None
        self.since = self._clock()
        log.error("thermal.stalled", reason=why)
        return why

    def round_done(self) -> None:
        """A round completed: alive again if it was stalled."""
        self.last_round = self._clock()
        if self.since is not None:
            log.warning("thermal.resumed", stalled_s=self.last_round - self.since)
            self.since = None
