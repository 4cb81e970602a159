"""A reading checked against the cabinet's own physics (issue 18; LESSONS, "Food holding
and small thermal controllers"): DS18B20s keep returning a good-CRC value, 0.000 or a
frozen copy of the last one (Mycodo #1393, Tasmota #4237), and only physics tells.

A cabinet whose unit is idle and whose door is shut drifts toward the room, its
reading stepping by a DS18B20 step (0.0625 C) every so often; as it nears the room the
steps come slower and slower, never all at once. A reading that, drifting, stops dead
(flat for ``expect_c / STEP_C`` times the last interval between its steps, and at least
``FLAT_MIN_S``) is a frozen copy: the sensor is failed (``SensorTrust.distrust``)
until its value changes. A cabinet truly still (a room inside the band) got there
with ever longer steps, so its flat line is long expected. The interval is kept from
one idle stretch to the next (a reading frozen as the unit stops never steps at all),
and is the time per step of what was moved (a gap with no rounds, a stalled loop,
does not stretch it); a new mode forgets it.

Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

STEP_C = 0.0625  # a DS18B20's step: a change smaller than this is no change
FLAT_MIN_S = 900.0  # never sooner: a reading is not failed for a quarter hour of calm
SETTLE_S = 300.0  # after a door shuts or the unit stops, the air settles first


class IdleDrift:
    """One cabinet's idle drift, as its reading's steps show it (``interval``: seconds
    between its last two steps while idle and shut, None until seen)."""

    def __init__(self, expect_c: float) -> None:
        self.factor = max(1.0, expect_c / STEP_C)
        self.interval: float | None = None
        self._mode: str | None = None
        self._quiet_since: float | None = None  # idle and shut since
        self._flat: tuple[float, float] | None = None  # (since, value): no step since

    def observe(self, now: float, temp: float | None, *, idle: bool, mode: str) -> str | None:
        """One round's reading held to the physics: why it does not fit, or None.

        ``temperature_c``: the trusted one (None: none); whether the unit is idle with the
        door shut; the mode held. A drift that stopped dead does not fit.
        """
        if mode != self._mode:
            self._mode, self.interval = mode, None
        if temp is None or not idle or mode == "ambient":
            self._quiet_since = self._flat = None
            return None
        if self._quiet_since is None:
            self._quiet_since = now
        if now - self._quiet_since < SETTLE_S:
            return None
        if self._flat is None:
            self._flat = (now, temp)
            return None
        since, value = self._flat
        if (moved := abs(temp - value)) >= STEP_C:  # a step: the drift goes on
            self.interval, self._flat = (now - since) / (moved / STEP_C), (now, temp)
            return None
        flat_s = now - since
        if self.interval is None or flat_s < max(FLAT_MIN_S, self.factor * self.interval):
            return None
        return (
            f"flat at {temp:.2f} C for {flat_s:.0f} s, idle and shut, where it stepped every"
            f" {self.interval:.0f} s: a frozen reading"
        )
