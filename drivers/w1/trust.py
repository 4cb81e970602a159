"""Is a DS18B20 reading to be trusted? Pure: no I/O, no clock of its own.

:class:`SensorTrust` judges one sensor's reads in order, each with the time it
was taken, and answers a :class:`Verdict`. The rules (issues 10 and 18; LESSONS
"Food holding"; Klipper's ``verify_heater`` for "while the unit runs"):

- a read that gives nothing (missing, ``NO``, garbled, unreadable), a value that
  is not a finite number in the DS18B20's range, and the 85.0 C power-up value
  (``POWER_ON_C``) away from the last plausible value (``POWER_ON_NEAR_C``) are
  *lost*: the last trusted verdict stands until the sensor has given nothing for
  ``grace_s`` seconds and at least ``fail_after`` reads in a row (a lost sensor is
  graced by time, not by a count of reads); then it is ``"missing"`` or
  ``"failed"``;
- a value that moves away from the last trusted one faster than the cabinet's
  physics allows is a *glitch*, lost like the above: ``drift_c_per_s`` while the
  unit is idle and the door shut (at this read or the trusted one), else
  ``max_rate_c_per_s``, plus ``JUMP_SLACK_C`` of noise. It becomes the reading
  once ``recover_reads`` reads in a row agree with each other (a real step, such
  as a sensor moved); a sensor that often glitches is noisy (``glitches``), not
  failed;
- a raw value unchanged for ``stuck_s`` of accumulated time while the unit runs
  (a heater or cooler on) is failed ("stuck") at once, until the value changes:
  a stuck sensor does not recover just because the controller turned the unit off;
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

    ``recover_reads`` (>= 1): good reads in a row to trust a sensor again, and to take
    a glitch as the new level; ``stuck_s`` (> 0): seconds of running with one raw value
    that make it stuck; ``max_rate_c_per_s`` (> 0): the fastest plausible change while
    a unit runs or a door is open; ``drift_c_per_s`` (> 0, default no limit): the
    fastest while idle and shut; ``fail_after`` (>= 1) and ``grace_s`` (>= 0): a
    trusted sensor is failed once it has given nothing for ``grace_s`` seconds *and*
    ``fail_after`` reads in a row; before any read, lost reads give ``missing`` with
    the reason ``NOT_YET`` as long. ``loss``: the share of reads lost lately;
    ``glitches``: the share that did not fit the physics. Raises ``ValueError`` for
    values out of those bounds.
    """

    __slots__ = (
        "_cand",
        "_cand_reads",
        "_drift",
        "_fail_after",
        "_fast_at_good",
        "_first_s",
        "_good_reads",
        "_good_s",
        "_grace_s",
        "_last",
        "_max_rate",
        "_misses",
        "_recover_reads",
        "_ref",
        "_ref_s",
        "_status",
        "_stuck_latched",
        "_stuck_s",
        "_stuck_why",
        "_unchanged_s",
        "glitches",
        "loss",
    )

    def __init__(
        self,
        *,
        recover_reads: int = 3,
        stuck_s: float = 900.0,
        max_rate_c_per_s: float = 1.0,
        fail_after: int = 1,
        grace_s: float = 0.0,
        drift_c_per_s: float = math.inf,
    ) -> None:
        if recover_reads < 1 or fail_after < 1:
            raise ValueError(
                f"recover_reads and fail_after must be >= 1: {recover_reads}, {fail_after}"
            )
        if not stuck_s > 0:
            raise ValueError(f"stuck_s must be > 0, not {stuck_s}")
        if not max_rate_c_per_s > 0 or not drift_c_per_s > 0:
            raise ValueError(f"rates must be > 0, not {max_rate_c_per_s}, {drift_c_per_s}")
        if not grace_s >= 0:
            raise ValueError(f"grace_s must be >= 0, not {grace_s}")
        self._recover_reads = recover_reads
        self._stuck_s = stuck_s
        self._max_rate = max_rate_c_per_s
        self._drift = min(drift_c_per_s, max_rate_c_per_s)
        self._fail_after = fail_after
        self._grace_s = grace_s
        self._status: Status = "missing"
        self._last: Verdict | None = None  # None: nothing judged yet
        self._ref: float | None = None  # the last raw value taken as a reference
        self._ref_s: float | None = None  # when it was read
        self._unchanged_s = 0.0  # running time with ``_ref`` unchanged
        self._stuck_latched = False
        self._stuck_why: str | None = None  # a caller's reason for a latched stuck
        self._good_reads = 0  # in a row, while not ok
        self._misses = 0  # reads in a row that gave nothing trusted
        self._first_s: float | None = None  # the first read's time (grace before any)
        self._good_s: float | None = None  # when the last trusted read was taken
        self._fast_at_good = False  # a unit ran or a door was open at that read
        self._cand: tuple[float, float] | None = None  # a glitch that may be a new level
        self._cand_reads = 0
        self.loss = 0.0  # the share of reads lost lately (a moving average)
        self.glitches = 0.0  # the share of reads that did not fit the physics lately

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
        door_open: bool = False,
    ) -> Verdict:
        """Judge one read taken at ``now_s`` (seconds, any monotonic origin): a value in
        degrees C or the fault reading it raised. ``unit_running``: a heater or cooler
        of the sensor's cabinet is on; ``held``: a mode is held, so even idle the air
        must move now and then (it counts ``IDLE_SHARE`` toward "stuck");
        ``door_open``: the room comes in (any rate is physics). Never raises for any
        float or fault."""
        if self._first_s is None:
            self._first_s = now_s
        if isinstance(reading, SensorFault):
            self.loss += LOSS_WEIGHT * (1 - self.loss)
            status: Status = "missing" if reading.reason == "missing" else "failed"
            return self._lost(now_s, status, _fault_reason(reading))
        value = float(reading)
        lost = self._unreadable(value)
        self.loss += LOSS_WEIGHT * ((lost is not None) - self.loss)
        if lost is not None:
            return self._lost(now_s, "failed", lost)
        fast = unit_running or door_open
        stuck = self._stuck(now_s, value, 1.0 if unit_running else IDLE_SHARE * held)
        if stuck is not None:
            self._misses += 1
            return self._fail("failed", stuck)
        if self._status == "ok" and self._last is not None:
            return self._trusted(now_s, value, fast)
        if self._last is None:  # the first read: nothing to compare with
            return self._good(now_s, value, fast)
        return self._recovering(now_s, value, fast)

    def _trusted(self, now_s: float, value: float, fast: bool) -> Verdict:
        """A value read while trusted: taken when it fits the physics since the last
        trusted read, else a glitch (lost) unless several agree on a new level."""
        assert self._last is not None and self._last.temperature_c is not None
        trusted = self._last.temperature_c
        rate = self._max_rate if fast or self._fast_at_good else self._drift
        fits = _within(value, trusted, rate, now_s - (self._good_s or now_s))
        self.glitches += LOSS_WEIGHT * ((not fits) - self.glitches)
        if fits:
            self._cand = None
            return self._good(now_s, value, fast)
        cand = self._cand
        if cand is not None and _within(value, cand[0], self._max_rate, now_s - cand[1]):
            self._cand_reads += 1
        else:
            self._cand_reads = 1
        self._cand = (value, now_s)
        if self._cand_reads >= self._recover_reads:  # several agree: the cabinet moved
            self._cand = None
            return self._good(now_s, value, fast)
        moved = abs(value - trusted)
        age = now_s - (self._good_s or now_s)
        return self._lost(now_s, "failed", f"jumped {moved:.1f} C in {max(0.0, age):.0f} s")

    def _recovering(self, now_s: float, value: float, fast: bool) -> Verdict:
        """A good value while not ok: ``recover_reads`` in a row, each plausible after
        the one before, make the sensor trusted again."""
        previous, previous_s = self._cand if self._cand is not None else (None, None)
        self._cand = (value, now_s)
        if previous is not None and previous_s is not None:
            dt_s = now_s - previous_s
            if not _within(value, previous, self._max_rate, dt_s):
                self._good_reads = 0
                moved = abs(value - previous)
                return self._set(
                    self._status, None, f"jumped {moved:.1f} C in {max(0.0, dt_s):.0f} s"
                )
        self._good_reads += 1
        if self._good_reads >= self._recover_reads:
            self._good_reads = 0
            return self._good(now_s, value, fast)
        text = f"recovering: {self._good_reads} of {self._recover_reads} good reads"
        return self._set(self._status, None, text)

    def _good(self, now_s: float, value: float, fast: bool) -> Verdict:
        self._misses = 0
        self._good_s, self._fast_at_good, self._cand = now_s, fast, None
        return self._set("ok", value, None)

    def _lost(self, now_s: float, status: Status, reason: str) -> Verdict:
        """A read that gave nothing trusted: the last trusted verdict stands within the
        grace, else the sensor is ``status`` for ``reason``."""
        self._misses += 1
        graced = self._misses < self._fail_after
        if self._last is None:  # none read yet: not failed within the grace
            assert self._first_s is not None
            if graced or max(0.0, now_s - self._first_s) < self._grace_s:
                self._cand = None
                return Verdict("missing", None, NOT_YET)
        elif (
            self._status == "ok"
            and self._good_s is not None
            and (graced or max(0.0, now_s - self._good_s) < self._grace_s)
        ):
            return self._last  # the last trusted verdict stands, briefly
        if self._status != "ok":
            self._cand = None  # a recovery starts again after a lost read
        return self._fail(status, reason)

    def _unreadable(self, value: float) -> str | None:
        """Why ``value`` is no reading at all (None: it is one)."""
        if not math.isfinite(value) or not MIN_C <= value <= MAX_C:
            return f"{value} C is not a DS18B20 reading"
        if value == POWER_ON_C and (self._ref is None or abs(self._ref - value) > POWER_ON_NEAR_C):
            return f"power-on value {POWER_ON_C} C"
        return None

    def distrust(self, reason: str) -> Verdict:
        """The caller's physics says the value is stuck (a flat line while the cabinet
        must move): failed for ``reason`` until the raw value changes, as for "stuck"."""
        self._stuck_latched, self._stuck_why = True, reason
        return self._fail("failed", reason)

    def _stuck(self, now_s: float, value: float, weight: float) -> str | None:
        """Whether ``value`` has stayed the same raw value too long while the unit
        worked (None: not stuck); moves the references on."""
        previous, previous_s = self._ref, self._ref_s
        dt_s = now_s - previous_s if previous_s is not None else 0.0
        if not (math.isfinite(dt_s) and dt_s > 0):
            dt_s = 0.0  # a clock that stands still or goes back: no time passed
        self._ref, self._ref_s = value, now_s
        if value != previous:
            self._unchanged_s = 0.0
            self._stuck_latched, self._stuck_why = False, None
        else:  # the same value on both sides of lost reads: unchanged all along
            self._unchanged_s += dt_s * weight
        if self._unchanged_s >= self._stuck_s:
            self._stuck_latched = True
        if self._stuck_why is not None:
            return self._stuck_why
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


def _within(value: float, reference: float, rate: float, dt_s: float) -> bool:
    """Whether ``value`` lies within ``rate`` * ``dt_s`` (+ noise) of ``reference``; a
    clock that stands still or goes back counts as no time."""
    if not (math.isfinite(dt_s) and dt_s > 0):
        dt_s = 0.0
    return abs(value - reference) <= rate * dt_s + JUMP_SLACK_C
