"""Is a DS18B20 reading to be trusted? Pure: no I/O, no clock of its own.

:class:`SensorTrust` judges one sensor's reads in order, each with the time it
was taken, and answers a :class:`Verdict`. The rules (issue 10; LESSONS "Food
holding"; Klipper's ``verify_heater`` for "while the unit runs"):

- a missing sensor is ``"missing"``; one that answers ``NO``, garbled or
  unreadable is ``"failed"``, as is a value that is not a finite number in the
  DS18B20's range;
- exactly 85.0 C (``POWER_ON_C``) is the power-up value, not a reading, unless
  the sensor has just been near it (the last value that passed every check is
  within ``POWER_ON_NEAR_C``): failed, and it is not taken as a reference;
- a raw value unchanged for ``stuck_s`` of accumulated time while the unit runs
  (a heater or cooler on) is failed ("stuck"), until the value changes: a stuck
  sensor does not recover just because the controller turned the unit off;
- a change faster than ``max_rate_c_per_s`` (plus ``JUMP_SLACK_C`` of noise)
  since the previous read is failed ("jumped");
- once not ok, a sensor recovers only after ``recover_reads`` good reads in a
  row, each plausible after the one before; until then the status stays
  failed or missing, with the reason ``"recovering: 1 of 3 good reads"``.

The first read after start has no history: it is trusted unless it fails a
check. A clock that stands still or goes back counts as no time passing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from drivers.w1.ds18b20 import MAX_C, MIN_C, POWER_ON_C, SensorFault

Status = Literal["ok", "failed", "missing"]

POWER_ON_NEAR_C = 10.0
"""How close the last plausible value must be for 85.0 C to count as a reading."""

IDLE_SHARE = 1 / 6
"""How much an idle minute in a held mode counts toward "stuck" (a running unit's
counts whole): a still box in a still room may hold one raw value for a while."""

LOSS_WEIGHT = 0.05
"""The weight of each read in ``SensorTrust.loss`` (about the last 20 reads)."""

NOT_YET = "no reading yet"
"""The reason while the first reads are lost (not failed before ``fail_after``)."""

JUMP_SLACK_C = 0.25
"""Change allowed on top of the rate limit: four 12-bit steps of noise, so two reads
at the same instant may differ by a flicker without being a jump."""

_FAULT_TEXT = {
    "missing": "sensor missing",
    "crc": "crc error",
    "garbled": "garbled reply",
    "unreadable": "unreadable",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One read judged: ``temperature_c`` (degrees C) only when ``status == "ok"``,
    ``reason`` (readable, for the log and the alarm) only when it is not."""

    status: Status
    temperature_c: float | None
    reason: str | None


def _fault_reason(fault: SensorFault) -> str:
    text = _FAULT_TEXT[fault.reason]
    return f"{text} ({fault.detail})" if fault.detail and fault.reason == "unreadable" else text


class SensorTrust:
    """The trust in one sensor, from the reads it is handed (see the module's rules).

    ``recover_reads`` (>= 1): good reads in a row to trust a sensor again;
    ``stuck_s`` (> 0): seconds of running with one raw value that make it stuck;
    ``max_rate_c_per_s`` (> 0): the fastest plausible change; ``fail_after`` (>= 1):
    failed reads in a row before a trusted sensor is failed (a long 1-wire line loses
    the odd read to a CRC error: until then the last trusted verdict stands, as a
    lock board is offline only after missed polls in a row), but for ``hold_s`` seconds
    after the last trusted read at most; before any read, lost reads give ``missing``
    with the reason ``NOT_YET``. ``loss``: the share of reads lost lately. Raises
    ``ValueError`` for values out of those bounds.
    """

    __slots__ = (
        "_fail_after",
        "_good_reads",
        "_good_s",
        "_hold_s",
        "_last",
        "_max_rate",
        "_misses",
        "_recover_reads",
        "_ref",
        "_ref_s",
        "_status",
        "_stuck_latched",
        "_stuck_s",
        "_unchanged_s",
        "loss",
    )

    def __init__(
        self,
        *,
        recover_reads: int = 3,
        stuck_s: float = 900.0,
        max_rate_c_per_s: float = 1.0,
        fail_after: int = 1,
        hold_s: float = math.inf,
    ) -> None:
        if recover_reads < 1 or fail_after < 1:
            raise ValueError(
                f"recover_reads and fail_after must be >= 1: {recover_reads}, {fail_after}"
            )
        if not stuck_s > 0:
            raise ValueError(f"stuck_s must be > 0, not {stuck_s}")
        if not max_rate_c_per_s > 0:
            raise ValueError(f"max_rate_c_per_s must be > 0, not {max_rate_c_per_s}")
        self._recover_reads = recover_reads
        self._stuck_s = stuck_s
        self._max_rate = max_rate_c_per_s
        self._status: Status = "missing"
        self._last: Verdict | None = None  # None: nothing judged yet
        self._ref: float | None = None  # the last raw value taken as a reference
        self._ref_s: float | None = None  # when it was read
        self._unchanged_s = 0.0  # running time with ``_ref`` unchanged
        self._stuck_latched = False
        self._good_reads = 0  # in a row, while not ok
        self._fail_after = fail_after
        self._misses = 0  # failed reads in a row
        self._hold_s = hold_s
        self._good_s: float | None = None  # when the last trusted read was taken
        self.loss = 0.0  # the share of reads lost lately (a moving average)

    @property
    def status(self) -> Status:
        """The last verdict's status; ``"missing"`` before any read."""
        return self._status

    @property
    def last(self) -> Verdict | None:
        """The last verdict, None before any read."""
        return self._last

    def judge(
        self,
        now_s: float,
        reading: float | SensorFault,
        *,
        unit_running: bool,
        held: bool = False,
    ) -> Verdict:
        """Judge one read taken at ``now_s`` (seconds, any monotonic origin): a value in
        degrees C or the fault reading it raised. ``unit_running``: a heater or cooler
        of the sensor's cabinet is on; ``held``: a mode is held, so even idle the air
        must move now and then (it counts ``IDLE_SHARE`` toward "stuck"). Never raises
        for any float or fault."""
        lost = isinstance(reading, SensorFault)
        self.loss += LOSS_WEIGHT * (lost - self.loss)
        if isinstance(reading, SensorFault):
            self._misses += 1
            if self._misses < self._fail_after:
                if self._last is None:  # none read yet: not failed before fail_after
                    return Verdict("missing", None, NOT_YET)
                fresh = self._good_s is not None and now_s - self._good_s <= self._hold_s
                if self._status == "ok" and fresh:
                    return self._last  # a lost read: the last trusted verdict stands, briefly
            status: Status = "missing" if reading.reason == "missing" else "failed"
            return self._fail(status, _fault_reason(reading))
        self._misses = 0
        value = float(reading)
        problem = self._check(now_s, value, 1.0 if unit_running else IDLE_SHARE * held)
        if problem is not None:
            return self._fail("failed", problem)
        if self._status == "ok" or self._last is None:
            self._good_s = now_s
            return self._set("ok", value, None)
        self._good_reads += 1
        if self._good_reads >= self._recover_reads:
            self._good_reads, self._good_s = 0, now_s
            return self._set("ok", value, None)
        text = f"recovering: {self._good_reads} of {self._recover_reads} good reads"
        return self._set(self._status, None, text)

    def _check(self, now_s: float, value: float, weight: float) -> str | None:
        """What is wrong with ``value`` (None: nothing); moves the references on."""
        if not math.isfinite(value) or not MIN_C <= value <= MAX_C:
            return f"{value} C is not a DS18B20 reading"
        if value == POWER_ON_C and (self._ref is None or abs(self._ref - value) > POWER_ON_NEAR_C):
            return f"power-on value {POWER_ON_C} C"
        previous, previous_s = self._ref, self._ref_s
        dt_s = now_s - previous_s if previous_s is not None else 0.0
        if not (math.isfinite(dt_s) and dt_s > 0):
            dt_s = 0.0  # a clock that stands still or goes back: no time passed
        self._ref, self._ref_s = value, now_s
        if value != previous:
            self._unchanged_s = 0.0
            self._stuck_latched = False
        else:  # the same value on both sides of lost reads: unchanged all along
            self._unchanged_s += dt_s * weight
        if previous is not None and abs(value - previous) > self._max_rate * dt_s + JUMP_SLACK_C:
            return f"jumped {abs(value - previous):.1f} C in {dt_s:.0f} s"
        if self._unchanged_s >= self._stuck_s:
            self._stuck_latched = True
        if self._stuck_latched:
            return f"stuck at {value:.3f} C for {self._unchanged_s:.0f} s of its unit's work"
        return None

    def _fail(self, status: Status, reason: str) -> Verdict:
        self._good_reads = 0
        return self._set(status, None, reason)

    def _set(self, status: Status, temperature_c: float | None, reason: str | None) -> Verdict:
        self._status = status
        self._last = Verdict(status, temperature_c, reason)
        return self._last
