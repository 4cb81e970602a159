"""Deciding each thermal output: pure, no I/O, no clock of its own (``now_s`` is given).

- :class:`UnitControl`: one cabinet's heater and cooler call, an on/off band with
  hysteresis (heat: on below ``low``, off at ``high``; chill and freeze: on above
  ``high``, off at ``low``). Never both at once; both off in ambient, without a trusted
  temperature, and once the unit is found not converging.
- "Not converging", after Klipper's ``verify_heater``: while a unit runs it must move
  the temperature ``converge_c`` toward its band within ``converge_s`` seconds of
  running (time locked out by a compressor timer or the duty limit does not count),
  else it is switched off (``fault``: the unit latches it, ADR 0011). A unit switched
  off beyond its band whose temperature keeps moving its way by twice ``converge_c``
  is told as ``runaway``: a heater's is a welded relay (``runaway_heater``: latched);
  a cooler's may be a room colder than a chill band (an alarm, gone once back in
  the band).
- Blind in the cold: without a trusted temperature a chill or freeze unit runs a
  fixed cycle (``fallback``), a heater nothing.
- :class:`Compressor`: minimum on and off times (anti-short-cycle), the off time also
  after power-up; a forced stop (sensor failed, agent stopping) is never delayed.
- :class:`DutyLimit`: a heater is on at most ``max_duty`` of any ``window_s`` window.
- :class:`FoodClock`: time out of temperature while occupied, the "time as a control"
  rules; it restarts when the cabinet is emptied.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.thermal.bands import Band

DUTY_WINDOW_S = 600.0


@dataclass(slots=True)
class Compressor:
    """Anti-short-cycle timers. ``since_s``: when it last switched; at power-up it counts
    as just switched off, so a restart never starts it early."""

    min_on_s: float
    min_off_s: float
    since_s: float
    on: bool = False

    def decide(self, now_s: float, want: bool, *, force_off: bool = False) -> bool:
        """Run or not, honouring the timers; ``force_off`` stops it at once."""
        held = now_s - self.since_s
        if force_off or (self.on and not want and held >= self.min_on_s):
            if self.on:
                self.on, self.since_s = False, now_s
        elif not self.on and want and held >= self.min_off_s:
            self.on, self.since_s = True, now_s
        return self.on


@dataclass(slots=True)
class DutyLimit:
    """At most ``max_duty`` of each ``window_s`` window on (1.0: no limit)."""

    max_duty: float
    window_s: float = DUTY_WINDOW_S
    _start_s: float | None = None
    _on_s: float = 0.0
    _last_s: float | None = None
    _was_on: bool = False

    def allow(self, now_s: float, want: bool) -> bool:
        """Whether the heater may be on now, given it is wanted."""
        if self._last_s is not None and self._was_on:
            self._on_s += max(0.0, now_s - self._last_s)
        if self._start_s is None or now_s - self._start_s >= self.window_s:
            self._start_s, self._on_s = now_s, 0.0
        self._last_s = now_s
        self._was_on = want and self._on_s < self.max_duty * self.window_s
        return self._was_on


@dataclass(slots=True)
class _Progress:
    """Where a running unit started from, and how long it has run since."""

    start_c: float
    run_s: float = 0.0


@dataclass(slots=True)
class Call:
    """What a cabinet asks for: heat, cold, or neither."""

    heat: bool = False
    cool: bool = False


class UnitControl:
    """One cabinet's thermal unit. ``bands``: the held modes' bands; ``converge_s`` and
    ``converge_c``: see the module; ``max_duty``: the heater's duty limit."""

    def __init__(
        self, bands: dict[str, Band], *, converge_s: float, converge_c: float, max_duty: float
    ) -> None:
        self.bands = bands
        self.converge_s = converge_s
        self.converge_c = converge_c
        self.duty = DutyLimit(max_duty)
        self.call = Call()
        self._want = False  # the band's hysteresis: called for until the far edge
        self.fault: str | None = None  # why the unit was switched off for good
        self.runaway: str | None = None  # why it seems to run while switched off
        self.runaway_heater = False  # ... and it is a heater (a welded relay)
        self.verify_idle = True  # False: a valve-less cabinet on a shared compressor
        self.fallback: dict[str, float] = {}  # mode -> share of FALLBACK cycle, blind
        self.fallback_cycle_s = 1800.0
        self.blind_since: float | None = None  # the fallback cycle's start
        self._mode = "ambient"
        self._running: _Progress | None = None  # a unit on, moving toward the band
        self._coasting: tuple[str, float] | None = None  # ("heat"/"cool", where it stopped)
        self._last_s: float | None = None

    def set_mode(self, mode: str) -> None:
        """The mode, set again or anew, or a technician's reset: re-arms the unit."""
        self._mode, self.fault, self.runaway, self.runaway_heater = mode, None, None, False
        self._running = self._coasting = None
        self.call, self._want = Call(), False

    def step(
        self,
        now_s: float,
        temperature_c: float | None,
        *,
        cooling_runs: bool,
        door_open: bool = False,
    ) -> Call:
        """The call for now.

        ``temperature_c``: the trusted reading (None: not trusted); ``cooling_runs``:
        cold was made since the last step (the cooler and, when shared, its compressor
        were on); ``door_open``: the room comes in, so verification waits and starts
        again once shut.
        """
        dt = 0.0 if self._last_s is None else max(0.0, now_s - self._last_s)
        self._last_s = now_s
        if door_open:
            self._running = self._coasting = None
        band = self.bands.get(self._mode)
        if band is None and temperature_c is not None:
            self._watch_ambient(temperature_c)
        if temperature_c is None and band is not None and self.fault is None:
            return self._blind(now_s)
        self.blind_since = None
        if band is None or temperature_c is None or self.fault is not None:
            self.call, self._want, self._running, self._coasting = Call(), False, None, None
            return self.call
        t = temperature_c
        heat = self._mode == "heat"
        ran = self.call.heat if heat else self.call.cool and cooling_runs
        self._verify(t, dt, heat, ran)
        if self.fault is not None:
            self.call, self._want = Call(), False
            return self.call
        if heat:
            self._want = t < band.low or (self._want and t < band.high)
            self.call = Call(heat=self.duty.allow(now_s, self._want))
        else:
            self._want = t > band.high or (self._want and t > band.low)
            self.call = Call(cool=self._want)
        if not self._want:
            self._running = None
        return self.call

    def _blind(self, now_s: float) -> Call:
        """No trusted temperature in a held mode: a cold unit runs its fixed cycle, on
        first (cold food warms while it waits), a heater nothing."""
        self._want, self._running, self._coasting = False, None, None
        duty = self.fallback.get(self._mode, 0.0)
        if duty <= 0:
            self.blind_since = None
            self.call = Call()
            return self.call
        if self.blind_since is None:
            self.blind_since = now_s
        phase = (now_s - self.blind_since) % self.fallback_cycle_s
        self.call = Call(cool=phase < duty * self.fallback_cycle_s)
        return self.call

    def _watch_ambient(self, t: float) -> None:
        """Ambient: every output off, so a cabinet hotter than any heat band or colder
        than any freeze band, by the runaway margin, has a relay stuck on."""
        heat, freeze = self.bands.get("heat"), self.bands.get("freeze")
        if heat is not None and t > heat.high + self._runaway_c(heat):
            self.runaway = f"{t:.1f} C in ambient with every output off: a heater relay stuck on?"
            self.runaway_heater = True
        elif freeze is not None and t < freeze.low - self._runaway_c(freeze):
            self.runaway = f"{t:.1f} C in ambient with every output off: a cooler relay stuck on?"
        elif not self.runaway_heater:
            self.runaway = None

    def _runaway_c(self, band: Band) -> float:
        return 2 * self.converge_c + (band.high - band.low)

    def _verify(self, t: float, dt: float, heat: bool, ran: bool) -> None:
        """Not converging, and a unit that runs while switched off."""
        sign = 1.0 if heat else -1.0
        if self._want:
            self._coasting = None
            if self._running is None:
                self._running = _Progress(t)  # (also after the door was open)
            elif sign * (t - self._running.start_c) >= self.converge_c:
                self._running = _Progress(t)  # progress: the check starts again
            elif ran:
                self._running.run_s += dt
                if self._running.run_s >= self.converge_s:
                    unit = "heater" if heat else "cooler"
                    self.fault = (
                        f"the {unit} ran {self._running.run_s:.0f} s and moved the temperature"
                        f" less than {self.converge_c:g} C toward the band"
                    )
            return
        band = self.bands[self._mode]
        if band.low <= t <= band.high and not self.runaway_heater:
            self.runaway = None
        kind = "heat" if heat else "cool"
        if self._coasting is None or self._coasting[0] != kind:
            self._coasting = (kind, t)
        # Past the turn-off point by more than the band and twice converge_c: a
        # heater's element overshoots by a few degrees, a welded relay does not stop.
        elif sign * (t - self._coasting[1]) >= self._runaway_c(band) and self.verify_idle:
            unit = "heater" if heat else "cooler"
            self.runaway = (
                f"the {unit} is off, yet the temperature moved {abs(t - self._coasting[1]):.1f} C"
                f" its way: a relay stuck on"
                + ("?" if heat else ", or a room colder than the band?")
            )
            self.runaway_heater = heat
        elif sign * (t - self._coasting[1]) < 0:
            self._coasting = (kind, t)  # moving back: follow it


@dataclass(slots=True)
class FoodClock:
    """Seconds food spent out of temperature while the cabinet was occupied.

    ``limit_s``: "time as a control" (UK 2 h once, FDA 4 h). The count starts again only
    when the cabinet is emptied: time out of temperature adds up over excursions."""

    limit_s: float
    out_s: float = 0.0
    unsafe: bool = False  # out of temperature at the last step, while occupied
    _last_s: float | None = None

    def step(self, now_s: float, *, occupied: bool, unsafe: bool) -> None:
        """Count the time since the last step when the food was out of temperature."""
        dt = 0.0 if self._last_s is None else max(0.0, now_s - self._last_s)
        self._last_s = now_s
        self.unsafe = occupied and unsafe
        if not occupied:
            self.out_s = 0.0
        elif unsafe:
            self.out_s += dt

    @property
    def exceeded(self) -> bool:
        """Past the limit: the food must go."""
        return self.out_s >= self.limit_s
