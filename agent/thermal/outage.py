"""How long the agent (and with it the fridge: every output is off while it is down)
was away, from evidence that survives the outage, and what it cost the food.

- The wall clock measures the outage only when it is known right (``clock.py``) and
  its time at our start is not earlier than the last record: a Pi without a clock
  chip boots at fake-hwclock's last save, before the cut.
- Else the outage has a lower bound: the change from the temperature saved with the
  food clock to the one found at the first reading, at ``drift_max_c_per_h`` (the
  fastest a shut, unpowered cabinet drifts).
- The food's state is judged at the first reading after start, never later (the
  compressor pulls the cabinet back into band long before the network time comes).
  Food found past its line after an outage of unknown length is past its time;
  food out of temperature before the cut and found back within its line counts the
  lower bound at once and the rest once the clock is known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Downtime:
    """One unit's outage: what was saved before it and, once judged, what was counted.

    ``saved_at`` (UNIX s), whether the food was out of temperature then, its last
    trusted temperature; then what was found and counted.
    """

    saved_at: float
    unsafe_before: bool
    saved_c: float | None
    found_unsafe: bool | None = None  # None: not judged yet
    lower_s: float = 0.0
    counted_s: float = 0.0


class Outage:
    """The evidence of the outage for every unit: the last record, the clock, the physics.

    ``last_record``: the newest record before this run; ``evidence``: the clock's, as
    it comes; ``drift_c_per_s``: the physics. ``clock``: monotonic s; ``wall``: UNIX s.
    """

    def __init__(
        self,
        last_record: float | None,
        *,
        drift_c_per_s: float,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self.last_record = last_record
        self.drift_c_per_s = drift_c_per_s
        self._clock, self._wall = clock, wall
        self._started = clock()
        self.clock_right = False  # the wall clock known right: records need no mark
        self.measures = False  # ... and not behind the last record: it measures outages
        self.why = "the clock's evidence not asked yet"

    def wall_at_start(self) -> float:
        """The wall clock's time at our start, as the wall clock reads now."""
        return self._wall() - (self._clock() - self._started)

    def evidence(self, synced: bool | None, by: str) -> bool:
        """Take what the machine says of its clock; True when the clock just became
        known right (what was written unsure can be corrected now)."""
        if self.clock_right or not synced:
            if not synced:
                self.why = by
            return False
        self.clock_right = True
        start = self.wall_at_start()
        if self.last_record is not None and start < self.last_record:
            self.why = (
                f"synchronised ({by}), yet our start ({start:.0f}) is earlier than the last"
                f" record ({self.last_record:.0f}): that record's clock was ahead"
            )
            log.warning("thermal.clock_behind_records", by=by, behind_s=self.last_record - start)
        else:
            self.measures = True
            self.why = f"synchronised ({by})"
        log.info("thermal.clock_known", by=by, measures_outages=self.measures)
        return True

    def gap_s(self, saved_at: float) -> float | None:
        """The outage since ``saved_at`` as the known-right clock measures it; None
        while it cannot."""
        if not self.measures:
            return None
        return max(0.0, self.wall_at_start() - saved_at)

    def lower_s(self, down: Downtime, found_c: float | None) -> float:
        """What the physics says the outage lasted at least."""
        if down.saved_c is None or found_c is None:
            return 0.0
        return abs(found_c - down.saved_c) / self.drift_c_per_s

    def settle(
        self,
        key: int,
        down: Downtime,
        *,
        found_unsafe: bool,
        found_c: float | None,
        occupied: bool,
        out_s: float,
        limit_s: float,
    ) -> tuple[float, bool]:
        """The food clock after what the outage cost (``out_s`` before), and whether
        this downtime is settled (False: the rest waits for the clock)."""
        if down.found_unsafe is None:  # the first reading after start: judged now
            down.found_unsafe = found_unsafe
            down.lower_s = self.lower_s(down, found_c)
            if not occupied or not (found_unsafe or down.unsafe_before):
                return out_s, True
        gap = self.gap_s(down.saved_at)
        if gap is not None:
            cost = max(gap, down.lower_s) - down.counted_s
            log.warning("thermal.downtime_counted", key=key, seconds=cost, measured_by="clock")
            return out_s + max(0.0, cost), True
        if down.found_unsafe:
            log.error(
                "thermal.outage_unknown",
                key=key,
                at_least_s=down.lower_s,
                why=self.why,
                said="food found past its line after an outage of unknown length: past its time",
            )
            return max(out_s + down.lower_s, limit_s), True
        if down.counted_s < down.lower_s:
            cost, down.counted_s = down.lower_s - down.counted_s, down.lower_s
            log.warning("thermal.downtime_counted", key=key, seconds=cost, measured_by="physics")
            return out_s + cost, False
        return out_s, False
