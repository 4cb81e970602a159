"""The thermal alarms, level-triggered as door supervision is: derived from the facts
each round, compared with what was published to the journal, raised once their
cause has lasted ``raise_s`` (only the alarms of ``DELAYED``: a sensor that vanishes
for seconds must not page anyone; safety alarms go at once) and cleared only once
their cause has been gone ``hold_s`` seconds (a sensor or a temperature on the edge
must not send the cloud an event every round).

- ``temperature_sensor_failed``: the sensor is missing or not trusted;
- ``temperature_out_of_band``: a held mode past its food code's line;
- ``thermal_not_converging``: a unit switched off by the verification, or one that
  keeps pushing while switched off (a heater's: latched, ADR 0011);
- ``food_time_exceeded``: food out of temperature longer than the code allows;
- ``temperature_over_limit``: at or above ``over_limit_c``: latched;
- ``thermal_stalled``: the control loop stopped completing rounds;
- ``thermal_fallback_cycle``: a cold unit runs its fixed cycle, blind.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.locker.cabinet import Cabinet
from agent.locker.supervision import FOOD_TIME_EXCEEDED, AlarmChange

SENSOR_FAILED = "temperature_sensor_failed"
OUT_OF_BAND = "temperature_out_of_band"
NOT_CONVERGING = "thermal_not_converging"
OVER_LIMIT = "temperature_over_limit"
STALLED = "thermal_stalled"
FALLBACK = "thermal_fallback_cycle"
THERMAL_ALARMS = frozenset(
    {SENSOR_FAILED, OUT_OF_BAND, NOT_CONVERGING, FOOD_TIME_EXCEEDED, OVER_LIMIT, STALLED, FALLBACK}
)
DELAYED = frozenset({SENSOR_FAILED, OUT_OF_BAND, FALLBACK})
"""Raised only once their cause has lasted ``raise_s``: what a flicker can cause."""

HOLD_S = 60.0


class AlarmBook:
    """When each cabinet's thermal alarms' causes came and went, for the delays."""

    def __init__(self, hold_s: float = HOLD_S, raise_s: float = 0.0) -> None:
        self.hold_s = hold_s
        self.raise_s = raise_s
        self._gone: dict[tuple[int, str], float] = {}
        self._came: dict[tuple[int, str], float] = {}
        self._told: dict[int, set[str]] = {}  # by cabinet key: raised and not cleared

    def changes(
        self,
        now_s: float,
        cabinet: Cabinet,
        wanted: set[str],
        hold_s: float | None = None,
        *,
        at_once: Iterable[str] = (),
    ) -> list[AlarmChange]:
        """The entries that bring ``cabinet``'s shown thermal alarms to ``wanted``.

        ``hold_s``: instead of the usual hold (0: a new mode's causes are new);
        ``at_once``: alarms cleared without a hold (a technician's reset).
        """
        hold = self.hold_s if hold_s is None else hold_s
        shown = self.told(cabinet)
        out = []
        for alarm in sorted(wanted - shown):
            key = (cabinet.key, alarm)
            came = self._came.setdefault(key, now_s)
            if alarm not in DELAYED or now_s - came >= self.raise_s:
                out.append(AlarmChange(cabinet, alarm, None, True))
        for alarm in [a for a in self._came if a[0] == cabinet.key and a[1] not in wanted]:
            del self._came[alarm]  # the cause went before it was told: forgotten
        cleared_now = set(at_once)
        for alarm in sorted(shown):
            key = (cabinet.key, alarm)
            self._came.pop(key, None)
            if alarm in wanted:
                self._gone.pop(key, None)
            elif alarm in cleared_now or now_s - self._gone.setdefault(key, now_s) >= hold:
                self._gone.pop(key, None)
                out.append(AlarmChange(cabinet, alarm, None, False))
        for change in out:
            (shown.add if change.raised else shown.discard)(change.alarm)
        return out

    def told(self, cabinet: Cabinet) -> set[str]:
        """The thermal alarms published for ``cabinet`` and not cleared.

        What was published, not what the cabinet shows yet: while the disk refuses,
        the journal holds the entry and the cabinet lags; asking again each round
        would queue the same event over and over.
        """
        return self._told.setdefault(
            cabinet.key, {alarm for alarm, _ in cabinet.alarms if alarm in THERMAL_ALARMS}
        )
