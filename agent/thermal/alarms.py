"""The thermal alarms, level-triggered as door supervision is: derived from the facts
each round, compared with what was published to the journal, raised at once
and cleared only once their cause has been gone ``hold_s`` seconds (a sensor or a
temperature on the edge must not send the cloud an event every round).

- ``temperature_sensor_failed``: the sensor is missing or not trusted;
- ``temperature_out_of_band``: a held mode past its food code's line;
- ``thermal_not_converging``: a unit switched off by the verification, or one that
  keeps pushing while switched off;
- ``food_time_exceeded``: food out of temperature longer than the code allows.
"""

from __future__ import annotations

from agent.locker.cabinet import Cabinet
from agent.locker.supervision import FOOD_TIME_EXCEEDED, AlarmChange

SENSOR_FAILED = "temperature_sensor_failed"
OUT_OF_BAND = "temperature_out_of_band"
NOT_CONVERGING = "thermal_not_converging"
THERMAL_ALARMS = frozenset({SENSOR_FAILED, OUT_OF_BAND, NOT_CONVERGING, FOOD_TIME_EXCEEDED})

HOLD_S = 60.0


class AlarmBook:
    """When each cabinet's thermal alarms' causes went, for the hold on clearing."""

    def __init__(self, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self._gone: dict[tuple[int, str], float] = {}
        self._told: dict[int, set[str]] = {}  # by cabinet key: raised and not cleared

    def changes(
        self, now_s: float, cabinet: Cabinet, wanted: set[str], hold_s: float | None = None
    ) -> list[AlarmChange]:
        """The entries that bring ``cabinet``'s shown thermal alarms to ``wanted``;
        ``hold_s`` instead of the usual hold (0: a new mode's causes are new)."""
        hold = self.hold_s if hold_s is None else hold_s
        # What was published, not what the cabinet shows yet: while the disk refuses,
        # the journal holds the entry and the cabinet lags; asking again each round
        # would queue the same event over and over.
        shown = self._told.setdefault(
            cabinet.key, {alarm for alarm, _ in cabinet.alarms if alarm in THERMAL_ALARMS}
        )
        out = [AlarmChange(cabinet, alarm, None, True) for alarm in sorted(wanted - shown)]
        for alarm in sorted(shown):
            key = (cabinet.key, alarm)
            if alarm in wanted:
                self._gone.pop(key, None)
            elif now_s - self._gone.setdefault(key, now_s) >= hold:
                del self._gone[key]
                out.append(AlarmChange(cabinet, alarm, None, False))
        for change in out:
            (shown.add if change.raised else shown.discard)(change.alarm)
        return out
