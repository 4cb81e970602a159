"""One cabinet's thermal unit between rounds: its sensor's trust, its controller, its
own compressor's timers, its food clock, and what it shows and alarms.

The service (``service.py``) runs the rounds; a unit answers for one cabinet: what
the API shows of it (``show``), whether its food is out of temperature
(``unsafe``), and which thermal alarms its facts call for (``wanted``).
"""

from __future__ import annotations

from agent.locker.cabinet import Cabinet
from agent.thermal import alarms
from agent.thermal.bands import Lines
from agent.thermal.config import ThermalConfig, ThermalWiring
from agent.thermal.control import Compressor, FoodClock, UnitControl
from agent.thermal.outputs import ThermalOutputs
from drivers.w1.trust import NOT_YET, SensorTrust, Verdict

HOLD_MAX_S = 120.0  # a lost read holds the last trusted one, never blind longer
HOLD_MIN_S = 30.0


class Unit:
    """One cabinet's thermal state (``cabinet``, its ``wiring``), built from ``cfg``
    at ``now`` (monotonic seconds: its own compressor counts as just off)."""

    def __init__(
        self, cabinet: Cabinet, wiring: ThermalWiring, cfg: ThermalConfig, now: float
    ) -> None:
        self.cabinet = cabinet
        self.wiring = wiring
        hold_s = min(HOLD_MAX_S, max(HOLD_MIN_S, cfg.sensor_fail_after * cfg.sample_s))
        self.trust = SensorTrust(
            recover_reads=cfg.sensor_recover_reads,
            stuck_s=cfg.sensor_stuck_s,
            max_rate_c_per_s=cfg.sensor_max_rate_c_per_s,
            fail_after=cfg.sensor_fail_after,
            hold_s=hold_s,
        )
        self.control = UnitControl(
            cfg.held_bands(),
            converge_s=cfg.converge_s,
            converge_c=cfg.converge_c,
            max_duty=cfg.heater_max_duty,
        )
        # A valve-less cabinet on a shared compressor is cooled when others call.
        self.control.verify_idle = not (wiring.compressor and wiring.cooler is None)
        self.own = Compressor(cfg.compressor_min_on_s, cfg.compressor_min_off_s, now)
        self.food = FoodClock(cfg.time_limit_s())
        self.verdict = Verdict("missing", None, NOT_YET)
        self.mode = "ambient"
        self.mode_set = -1  # the cabinet's thermal_set last seen: a new one re-arms
        self.mode_changed = False  # this round: its alarms clear at once
        self.excursion = False
        self.peak_c = 0.0  # the open excursion's worst temperature
        self.down: tuple[float, bool] | None = None  # (saved at, unsafe then): a restart
        self.front_open = False  # assume_occupied: a pickup empties the cabinet
        self.output_error: str | None = None  # its outputs refused: the others go on

    def unsafe(self, lines: Lines) -> bool:
        """Held, and past its line or unknown (a failed sensor proves nothing)."""
        temp = self.verdict.temperature_c
        return self.mode != "ambient" and (temp is None or not lines.safe(self.mode, temp))

    def show(self, outputs: ThermalOutputs) -> None:
        """The cabinet's ``temperature_c`` and the unit's outputs and sensor, as the API
        shows them (mode and band come from the cabinet as set)."""
        key, temp = self.cabinet.key, self.verdict.temperature_c
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
        wanted = set()
        if self.verdict.status != "ok" and self.verdict.reason != NOT_YET:
            wanted.add(alarms.SENSOR_FAILED)
        shown = any(a == alarms.OUT_OF_BAND for a, _ in self.cabinet.alarms)
        if self.unsafe(lines) and (self.verdict.temperature_c is not None or shown):
            wanted.add(alarms.OUT_OF_BAND)  # unknown is not back in band
        if self.control.fault is not None or self.control.runaway is not None:
            wanted.add(alarms.NOT_CONVERGING)
        if self.food.exceeded:
            wanted.add(alarms.FOOD_TIME_EXCEEDED)
        return wanted
