"""One cabinet's thermal unit between rounds: its sensor's trust, its controller, its
own compressor's timers, its food clock, its latches, and what it shows and alarms.

The service (``service.py``) runs the rounds; a unit answers for one cabinet: what
the API shows of it (``show``), whether its food is out of temperature
(``unsafe``), whether it is an empty cabinet coming up to temperature
(``coming_up``), what latches now (``latch_now``), and which thermal alarms its facts
call for (``wanted``).

An empty cabinet out of its line holds no food (ADR 0021): while it is known empty
(``known_empty``: its item sensor has answered since start, its board answers, it
reads empty; never under ``assume_occupied``) its time out of line is recorded
apart, labelled ``pull-down`` (cold) or ``pre-heat`` (hot) until it first reaches
its line in its mode, raising no ``temperature_out_of_band``; ``empty`` after,
alarmed as any (a unit failing before food goes in). An item sensed while it is
still out of line starts the excursion then; a silent item board whose last reading
was empty keeps a labelled row going (``silent_empty``), though it alarms as food.

A cabinet that held an item (read for ``FULL_AFTER_S``) is taken as emptied only once
its item sensor has read empty for ``EMPTY_AFTER_S`` (``reads_empty``, ADR 0023): a
sensor that flickers empty for a round must not restart the food clock nor the
out-of-band alarm's delay.
"""

from __future__ import annotations

import structlog

from agent.locker.cabinet import Cabinet
from agent.thermal import alarms
from agent.thermal.bands import Lines
from agent.thermal.config import ThermalConfig, ThermalWiring
from agent.thermal.control import Compressor, FoodClock, UnitControl
from agent.thermal.latch import Latch
from agent.thermal.outage import Downtime
from agent.thermal.outputs import ThermalOutputs
from agent.thermal.physics import IdleDrift
from drivers.w1.ds18b20 import SensorFault
from drivers.w1.trust import NOT_YET, SensorTrust, Verdict

log = structlog.get_logger(__name__)

PULL_DOWN, PRE_HEAT, EMPTY = "pull-down", "pre-heat", "empty"
EMPTY_AFTER_S = 30.0  # food held: emptied once the item sensor reads empty this long
FULL_AFTER_S = 5.0  # an item read this long is food held (shorter: a glitch, gone at once)
LOSSY = 0.2  # a sensor losing more of its reads than this is said in /healthz
NOISY = 0.1  # ... or whose reads fit the physics less often than this


class Unit:
    """One cabinet's thermal state (``cabinet``, its ``wiring``), built from ``cfg``
    at ``now`` (monotonic seconds: its own compressor counts as just off)."""

    def __init__(
        self, cabinet: Cabinet, wiring: ThermalWiring, cfg: ThermalConfig, now: float
    ) -> None:
        self.cabinet = cabinet
        self.wiring = wiring
        self.trust = SensorTrust(
            recover_reads=cfg.sensor_recover_reads,
            stuck_s=cfg.sensor_stuck_s,
            max_rate_c_per_s=cfg.sensor_max_rate_c_per_s,
            fail_after=cfg.sensor_fail_after,
            grace_s=cfg.sensor_grace_s,
            drift_c_per_s=cfg.drift_max_c_per_h / 3600.0,
        )
        self.drift = IdleDrift(cfg.converge_c)  # a flat line where physics moves it
        self.control = UnitControl(
            cfg.held_bands(),
            converge_s=cfg.converge_s,
            converge_c=cfg.converge_c,
            max_duty=cfg.heater_max_duty,
        )
        # A valve-less cabinet on a shared compressor is cooled when others call.
        self.control.verify_idle = not (wiring.compressor and wiring.cooler is None)
        if wiring.cooler is not None or wiring.compressor is not None:
            self.control.fallback = {m: cfg.fallback.duty(m) for m in ("chill", "freeze")}
        self.control.fallback_cycle_s = cfg.fallback.cycle_s
        self.over_limit_c = cfg.over_limit_c
        self.assume_occupied = cfg.assume_occupied  # no item sensors: never known empty
        self.own = Compressor(cfg.compressor_min_on_s, cfg.compressor_min_off_s, now)
        self.food = FoodClock(cfg.time_limit_s())
        self.verdict = Verdict("missing", None, NOT_YET)
        self.mode = "ambient"
        self.mode_set = -1  # the cabinet's thermal_set last seen: a new mode re-arms
        self.mode_changed = False  # this round: its alarms clear at once
        self.excursion = False  # a row of the excursions table is open
        self.excursion_kind: str | None = None  # ... its kind: None for food's, else a label
        self.reached = False  # within its line since its mode was set (or the agent started)
        self.coming_up: str | None = None  # this round: empty and out of line, its label
        self.item_since: float | None = None  # monotonic: read occupied since (this run)
        self.empty_since: float | None = None  # ... read empty since
        self.held = False  # an item read FULL_AFTER_S: empty waits EMPTY_AFTER_S
        self.sensed = False  # _sense has run once (a kept food clock is a held item)
        self.reads_empty = False  # this round: empty, as thermal believes it
        self.peak_c = 0.0  # the open excursion's worst temperature
        self.down: Downtime | None = None  # the food clock saved before a restart
        self.outage_start: float | None = None  # found past its line: began in the outage
        self.front_open = False  # assume_occupied: a pickup empties the cabinet
        self.output_error: str | None = None  # its outputs refused: the others go on
        self.latches: dict[str, Latch] = {}
        self.cleared: set[str] = set()  # alarms a reset clears at the next round

    def judge(
        self,
        now: float,
        reading: float | SensorFault,
        *,
        running: bool,
        door_open: bool,
        said: bool,
    ) -> None:
        """This round's reading judged, and the mode as the cabinet has it now (a new
        ``set_thermal_mode`` re-arms the controller); ``said``: log the changes."""
        cabinet = self.cabinet
        held = cabinet.thermal_mode != "ambient"  # a unit in charge: the air must move
        before = self.verdict.status
        verdict = self.trust.judge(now, reading, unit_running=running, held=held,
                                   door_open=door_open)  # fmt: skip
        idle = not running and not door_open
        mode = cabinet.thermal_mode
        if (
            flat := self.drift.observe(now, verdict.temperature_c, idle=idle, mode=mode)
        ) is not None:
            verdict = self.trust.distrust(flat)
        self.verdict = verdict
        self.mode_changed = False
        self._sense(now)
        if verdict.status != before and said:
            level = log.info if verdict.status == "ok" else log.warning
            level("thermal.sensor", key=cabinet.key, status=verdict.status,
                  reason=verdict.reason)  # fmt: skip
        if cabinet.thermal_set != self.mode_set:
            if said:
                level = log.warning if cabinet.occupied else log.info
                level("thermal.mode_set", key=cabinet.key, mode=cabinet.thermal_mode,
                      was=self.mode, occupied=cabinet.occupied)  # fmt: skip
            self.mode_changed = self.mode != cabinet.thermal_mode
            self.mode, self.mode_set = cabinet.thermal_mode, cabinet.thermal_set
            if self.mode_changed:  # the same mode re-sent keeps a fault's progress
                self.control.set_mode(self.mode)
                self.reached = False

    def _sense(self, now: float) -> None:
        """This round's ``reads_empty`` at ``now`` (monotonic s), read at the rounds (a
        flicker between two is never seen). An item read is believed at once; one read
        for ``FULL_AFTER_S`` (or a food clock kept across a restart) is ``held``, and
        a held item is gone only once the sensor has read empty for ``EMPTY_AFTER_S``
        (ADR 0023): a flicker empty is not the food taken out, and a glitch reading an
        item for a moment is not food held past ``alarm_raise_s``."""
        cabinet = self.cabinet
        if not self.sensed:
            self.sensed, self.held = True, self.food.out_s > 0
        if cabinet.occupied:
            self.empty_since, self.reads_empty = None, False
            if cabinet.occupied_sensed:  # read, not the default
                since = self.item_since = now if self.item_since is None else self.item_since
                self.held = self.held or now - since >= FULL_AFTER_S
            return
        self.item_since = None
        since = self.empty_since = now if self.empty_since is None else self.empty_since
        if self.held and now - since >= EMPTY_AFTER_S:
            self.held = False
        self.reads_empty = not self.held

    def known_empty(self) -> bool:
        """Whether the cabinet is known to hold nothing: its item sensor has answered
        since start, its board answers now and it reads empty (``reads_empty``: for
        ``EMPTY_AFTER_S`` once an item was held); never under ``assume_occupied`` (no
        item sensors: empty is never known)."""
        cabinet = self.cabinet
        sensed = cabinet.occupied_sensed and cabinet.occupied_known
        return not self.assume_occupied and sensed and self.reads_empty

    def silent_empty(self) -> bool:
        """Whether the cabinet's item sensor has answered since start, its board is
        silent now and its last reading was empty (``reads_empty``); never under
        ``assume_occupied``. Not known empty: the alarms treat it as food may be there."""
        cabinet = self.cabinet
        sensed = cabinet.occupied_sensed and not cabinet.occupied_known
        return not self.assume_occupied and sensed and self.reads_empty

    def label(self, lines: Lines) -> None:
        """This round's ``coming_up``: None unless the cabinet is known empty, held and
        past its line at a trusted temperature; then ``pull-down`` (chill, freeze) or
        ``pre-heat`` (heat) until it has reached its line in this mode, ``empty`` after.

        A labelled row goes on while its item sensor's board is silent and its last
        reading was empty (``silent_empty``): the record says food only once an item is
        read (ADR 0021); the alarms still treat the silence as food (``known_empty``)."""
        temp = self.verdict.temperature_c
        out = self.mode != "ambient" and temp is not None and not lines.safe(self.mode, temp)
        if temp is not None and not out:
            self.reached = True
        labelled = self.excursion and self.excursion_kind is not None  # its open row
        empty = self.known_empty() or (labelled and self.silent_empty())
        if not out or not empty:
            self.coming_up = None
        elif self.reached:
            self.coming_up = EMPTY
        else:
            self.coming_up = PRE_HEAT if self.mode == "heat" else PULL_DOWN

    def problems(self) -> list[str]:
        """What keeps this unit from working fully, one line each (for /healthz)."""
        key, out = self.cabinet.key, []
        for latch in self.latches.values():
            out.append(f"cabinet {key}: thermal unit latched off: {latch.describe()}")
        if self.verdict.status != "ok" and self.verdict.reason != NOT_YET:
            out.append(f"cabinet {key}: temperature sensor not trusted: {self.verdict.reason}")
        if not self.latched and (why := self.control.fault or self.control.runaway):
            out.append(f"cabinet {key}: thermal unit: {why}")
        if self.control.blind_since is not None:
            out.append(f"cabinet {key}: cooling on its fixed cycle, blind")
        if self.output_error is not None:
            out.append(f"cabinet {key}: thermal outputs refused: {self.output_error}")
        if self.trust.loss > LOSSY:
            out.append(f"cabinet {key}: sensor loses {self.trust.loss:.0%} of its reads:"
                       " check its wiring and pull-up")  # fmt: skip
        if self.trust.glitches > NOISY:
            out.append(f"cabinet {key}: sensor noisy: {self.trust.glitches:.0%} of its"
                       " reads do not fit the cabinet's physics")  # fmt: skip
        return out

    @property
    def latched(self) -> bool:
        """Whether a safety shut-off holds the unit off."""
        return bool(self.latches)

    @property
    def cut(self) -> bool:
        """Whether a latch asks the heaters' supply to be cut (a heater beyond control)."""
        return any(latch.cut for latch in self.latches.values())

    def unsafe(self, lines: Lines) -> bool:
        """Held, and past its line or unknown (a failed sensor proves nothing)."""
        temp = self.verdict.temperature_c
        return self.mode != "ambient" and (temp is None or not lines.safe(self.mode, temp))

    def latch_now(self, wall: float) -> list[Latch]:
        """The latches this round's facts add: over the limit, not converging, a relay stuck on.

        Also shown on the cabinet, where ``set_thermal_mode`` meets them.
        """
        found = []
        temp = self.verdict.temperature_c
        if temp is not None and temp >= self.over_limit_c:
            why = f"{temp:.1f} C, at or over the {self.over_limit_c:g} C limit"
            found.append(Latch(alarms.OVER_LIMIT, why, wall, cut=True))
        if self.control.runaway_heater and self.control.runaway is not None:
            found.append(Latch(alarms.NOT_CONVERGING, self.control.runaway, wall, cut=True))
        elif self.control.fault is not None:
            found.append(Latch(alarms.NOT_CONVERGING, self.control.fault, wall))
        new = []
        for latch in found:
            held = self.latches.get(latch.alarm)
            if held is None or (latch.cut and not held.cut):
                self.latches[latch.alarm] = latch
                new.append(latch)
        self.show_latches()
        return new

    def restore(self, latches: list[Latch]) -> None:
        """The latches kept from before a restart."""
        self.latches = {latch.alarm: latch for latch in latches}
        self.show_latches()

    def reset(self) -> list[Latch]:
        """A technician's reset: every latch cleared, the unit re-armed in its mode;
        answers what was cleared."""
        cleared = list(self.latches.values())
        self.cleared |= set(self.latches)
        self.latches = {}
        self.control.set_mode(self.mode)
        self.show_latches()
        return cleared

    def show_latches(self) -> None:
        """The latches as the cabinet carries them, for the locker's refusals."""
        self.cabinet.thermal_latches = {a: latch.why for a, latch in self.latches.items()}

    def show(self, outputs: ThermalOutputs, *, stalled: bool = False) -> None:
        """Show the cabinet's ``temperature_c``, the unit's outputs and sensor, as the API does.

        Mode and band come from the cabinet as set; ``stalled``: the loop stopped, so
        temperature, outputs and the sensor's state are unknown (``None``): no one
        reads the sensor, and its last verdict is not current.
        """
        key, temp = self.cabinet.key, self.verdict.temperature_c
        if stalled:
            self.cabinet.temperature_c = None
            self.cabinet.thermal = {
                "heating": None,
                "cooling": None,
                "sensor": None,
            }
            return
        shared = self.wiring.compressor
        cooling = outputs.cooler_on(key) or (shared is not None and self.control.call.cool)
        if shared is not None:  # a valve-less cabinet is cooled whenever its compressor runs
            valve = self.wiring.cooler is not None
            cooling = (cooling or not valve) and outputs.compressor_on(shared)
        self.cabinet.temperature_c = None if temp is None else round(temp, 1)
        self.cabinet.thermal = {
            "heating": outputs.heating(key),
            "cooling": cooling,
            "sensor": self.verdict.status,
        }

    def wanted(self, lines: Lines) -> set[str]:
        """The thermal alarms its facts call for now."""
        wanted = set(self.latches)
        if self.verdict.status != "ok" and self.verdict.reason != NOT_YET:
            wanted.add(alarms.SENSOR_FAILED)
        shown = any(a == alarms.OUT_OF_BAND for a, _ in self.cabinet.alarms)
        known = self.verdict.temperature_c is not None or shown  # unknown is not back in band
        # Coming up empty (not yet in its line in this mode) pages nobody; an empty
        # cabinet that leaves its line after holding it does: the unit is failing
        # before food goes in, and a locker whose channels have no sensor fitted
        # (they read empty) is still paged.
        rising = self.known_empty() and not self.reached
        if self.unsafe(lines) and known and not rising:
            wanted.add(alarms.OUT_OF_BAND)
        if not self.latched and (self.control.fault or self.control.runaway):
            wanted.add(alarms.NOT_CONVERGING)
        if not self.latched and self.control.blind_since is not None:
            wanted.add(alarms.FALLBACK)
        if self.food.exceeded:
            wanted.add(alarms.FOOD_TIME_EXCEEDED)
        return wanted
