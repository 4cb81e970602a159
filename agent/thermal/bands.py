"""Food codes: the lines past which food is out of temperature, the bands held, the time
food may spend past its line.

From the codes (``shared/LESSONS.md``, "Food holding"):

- UK (Food Safety and Hygiene Regulations): hot held at 63 C or above, chilled at
  8 C or below; food out of temperature may be held once, for up to 2 hours.
- US FDA Food Code 2022: hot held at 57 C (135 F) or above, cold at 5 C (41 F) or
  below; time as a public health control allows up to 4 hours.
- Frozen under both: -18 C or below, alarm above -15 C.

A band lies on the safe side of its line with room for hysteresis, so a cabinet that
holds its band never touches the alarm.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Band:
    """What a held mode keeps: from ``low`` to ``high`` degrees C."""

    low: float
    high: float

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


@dataclass(frozen=True, slots=True)
class Lines:
    """The alarm lines, in degrees C: hot food below ``hot_min_c``, chilled food above
    ``chill_max_c``, frozen food above ``frozen_max_c`` is out of temperature."""

    hot_min_c: float
    chill_max_c: float
    frozen_max_c: float

    def safe(self, mode: str, temperature_c: float) -> bool:
        """Whether food held in ``mode`` is within its line at ``temperature_c``
        (ambient: always)."""
        if mode == "heat":
            return temperature_c >= self.hot_min_c
        if mode == "chill":
            return temperature_c <= self.chill_max_c
        if mode == "freeze":
            return temperature_c <= self.frozen_max_c
        return True

    def describe(self, mode: str) -> str:
        """The line of ``mode`` in words, e.g. ``"at or below 8 C"``."""
        if mode == "heat":
            return f"at or above {self.hot_min_c:g} C"
        if mode == "chill":
            return f"at or below {self.chill_max_c:g} C"
        return f"at or below {self.frozen_max_c:g} C"


@dataclass(frozen=True, slots=True)
class FoodCode:
    """One jurisdiction's lines, default bands and time limit (seconds)."""

    lines: Lines
    bands: dict[str, Band]
    time_limit_s: float


FOOD_CODES: dict[str, FoodCode] = {
    "uk": FoodCode(
        Lines(hot_min_c=63.0, chill_max_c=8.0, frozen_max_c=-15.0),
        {"heat": Band(66.0, 70.0), "chill": Band(1.0, 4.0), "freeze": Band(-22.0, -19.0)},
        2 * 3600.0,
    ),
    "fda": FoodCode(
        Lines(hot_min_c=57.0, chill_max_c=5.0, frozen_max_c=-15.0),
        {"heat": Band(60.0, 65.0), "chill": Band(1.0, 4.0), "freeze": Band(-22.0, -19.0)},
        4 * 3600.0,
    ),
}
