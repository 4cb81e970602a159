"""Safety shut-offs that latch (ADR 0011): a unit found not converging, a cabinet at or
over ``over_limit_c``, a heater that heats while switched off. The unit stays off and
the alarm raised until a technician resets it; no mode set, from the cloud or the
local API, clears one (``Cabinet.thermal_refusal`` says why, ``Locker`` refuses).

Klipper's and Marlin's thermal faults latch the same way: nothing the host sends
clears them, only a person. A latch is kept in the records (``Records.latches``), so
a restart (the watchdog's too) does not clear it either.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Latch:
    """One latched shut-off: its ``alarm``, ``why`` in words, ``since`` and ``cut``.

    ``since``: UNIX seconds, the wall clock as it was; ``cut``: the heaters' cutoff
    opens with it (a heater beyond control).
    """

    alarm: str
    why: str
    since: float
    cut: bool = False

    def describe(self) -> str:
        """``thermal_not_converging (the heater ran 1200 s ...)``."""
        return f"{self.alarm} ({self.why})"
