"""The thermal sections of the config: ``[thermal]`` (with ``[[thermal.compressors]]``,
``[thermal.bands]`` and ``[thermal.lines]``) and a cabinet's ``thermal`` unit.

```toml
[thermal]
food_code = "uk"                  # "uk" or "fda": the alarm lines and the time limit
w1_dir = "/sys/bus/w1/devices"
over_limit_c = 90                 # heaters cut, cabinet disabled, latched (ADR 0011)
cutoff = { bus = "gpio", pin = 10 }   # optional: a contactor in the heaters' supply

[[thermal.compressors]]
name = "cold-bank"
bus = "gpio"
pin = 5

[[cabinets]]
thermal = { sensor = "28-00000a1b2c3d", bus = "gpio", heater = 17, cooler = 27 }
```

The contract is ``shared/DESIGN.md``, "Thermal". Bands (what the controller holds)
and lines (where an alarm starts) default by ``food_code`` (``bands.py``) and can be
overridden within bounds that stop nonsense: a heat band under 50 C or a freeze band
above 0 C is refused, and so is a band on the unsafe side of its line. Whether the
buses named are GPIO buses, pins used twice, and compressors named but not declared
are the config's cross checks (they need the whole file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from agent.thermal.bands import FOOD_CODES, Band, Lines
from drivers.config import Name, NameRef, StrictModel
from drivers.gpio.config import OutputPin
from drivers.w1.config import SensorId

FoodCode = Literal["uk", "fda"]

OVER_LIMIT_MARGIN_C = 5.0
"""``over_limit_c`` lies at least this far above the heat band's top (overshoot)."""

Celsius = Annotated[float, Field(strict=False, ge=-40.0, le=120.0)]
"""A temperature in degrees Celsius; integers are taken too (TOML ``63`` for ``63.0``)."""

BandPair = Annotated[list[Celsius], Field(min_length=2, max_length=2)]
"""``[low, high]`` in degrees Celsius."""


class BandsConfig(StrictModel):
    """``[thermal.bands]``: the band each held mode keeps, ``[low, high]`` in C; a mode
    left out keeps its food code's default (``bands.DEFAULT_BANDS``)."""

    heat: BandPair | None = None
    chill: BandPair | None = None
    freeze: BandPair | None = None

    @model_validator(mode="after")
    def _sensible(self) -> BandsConfig:
        for mode in ("heat", "chill", "freeze"):
            pair = getattr(self, mode)
            if pair is None:
                continue
            low, high = pair
            if high - low < 0.5:
                raise ValueError(f"{mode}: [low, high] needs high at least 0.5 C above low")
        if self.heat is not None and self.heat[0] < 50.0:
            raise ValueError("heat: a hot-holding band under 50 C lets bacteria grow")
        if self.freeze is not None and self.freeze[1] > 0.0:
            raise ValueError("freeze: a freezing band above 0 C does not freeze")
        if self.chill is not None and not (self.chill[0] >= -2.0 and self.chill[1] <= 10.0):
            raise ValueError("chill: a chilling band lies within -2 C to 10 C")
        return self


class LinesConfig(StrictModel):
    """``[thermal.lines]``: where an alarm starts, in C; left out: the food code's."""

    hot_min_c: float | None = Field(None, strict=False, ge=50.0, le=90.0)
    chill_max_c: float | None = Field(None, strict=False, ge=0.0, le=10.0)
    frozen_max_c: float | None = Field(None, strict=False, ge=-30.0, le=-5.0)


class CompressorConfig(StrictModel):
    """A ``[[thermal.compressors]]`` entry: a compressor several cabinets share; it runs
    while any of them calls for cold."""

    name: Name
    bus: NameRef
    pin: OutputPin


class CutoffConfig(StrictModel):
    """``[thermal] cutoff``: a contactor in the heaters' supply, as printers fit one.

    Held closed while the control loop runs and trusts itself; it opens when a cabinet
    goes over ``over_limit_c``, a heater heats while switched off, the loop stalls, or
    the agent stops (ADR 0011).
    """

    bus: NameRef
    pin: OutputPin


class FallbackConfig(StrictModel):
    """``[thermal.fallback]``: a cold cabinet's cooler on a fixed cycle while its sensor failed.

    ``cycle_s`` long, on for the share of its mode (0: off); the compressor's own
    timers win over it (Dixell/Eliwell "Con/CoF"). A heater never runs blind.
    """

    cycle_s: float = Field(1800.0, ge=60, le=7200)
    chill: float = Field(0.35, ge=0.0, le=1.0)
    freeze: float = Field(0.6, ge=0.0, le=1.0)

    def duty(self, mode: str) -> float:
        """The share of ``cycle_s`` the cooler runs blind in ``mode`` (0 for heat and
        ambient)."""
        return {"chill": self.chill, "freeze": self.freeze}.get(mode, 0.0)


class ThermalConfig(StrictModel):
    """``[thermal]``: the food code, where the sensors are, the records, the timers that
    protect the machines. Seconds end in ``_s``; temperatures in ``_c``."""

    food_code: FoodCode = "uk"
    w1_dir: Annotated[Path, Field(strict=False)] = Path("/sys/bus/w1/devices")
    sample_s: float = Field(1.0, ge=0.5, le=60)  # sensors read, outputs decided
    log_every_s: int = Field(300, ge=1, le=3600)
    retention_days: int = Field(400, ge=1, le=3650)
    disable_when_unsafe: bool = False
    compressor_min_off_s: float = Field(180.0, ge=0, le=1800)
    compressor_min_on_s: float = Field(60.0, ge=0, le=1800)
    heater_max_duty: float = Field(1.0, ge=0.1, le=1.0)  # share of any 10 min window
    converge_s: float = Field(1200.0, ge=5, le=14400)  # verify_heater's check_gain_time
    converge_c: float = Field(1.0, ge=0.1, le=20)  # ... and its heating_gain
    food_time_limit_s: float | None = Field(None, ge=60, le=4 * 3600)
    sensor_stuck_s: float = Field(3600.0, ge=60, le=86400)  # > converge_s: see ADR 0007
    sensor_recover_reads: int = Field(3, ge=1, le=20)
    sensor_max_rate_c_per_s: float = Field(2.0, ge=0.1, le=50)  # faster is a glitch
    # A lost read holds the last trusted one until the sensor has given nothing for
    # sensor_grace_s and at least sensor_fail_after reads in a row: then it is failed.
    sensor_grace_s: float = Field(10.0, ge=2, le=300)
    sensor_fail_after: int = Field(3, ge=1, le=10)
    # The fastest a shut cabinet drifts with its unit off: a reading that moves faster
    # while idle is a glitch, and an outage lasted at least the change found over it.
    drift_max_c_per_h: float = Field(20.0, ge=1, le=200)
    alarm_raise_s: float = Field(20.0, ge=0, le=3600)  # sensor and band alarms: cause this long
    alarm_clear_s: float = Field(60.0, ge=0, le=3600)  # cause gone this long: cleared
    over_limit_c: float = Field(90.0, strict=False, ge=70, le=120)  # heaters cut, disabled
    # The loop completed no round this long (and at least the outputs' lease): stalled,
    # said, and the watchdog no longer fed.
    stall_s: float = Field(30.0, ge=5, le=600)
    cutoff: CutoffConfig | None = None
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    # true: no item sensors fitted, so time out of temperature counts while a mode is
    # held (else only while the cabinet's item sensor says occupied).
    assume_occupied: bool = False
    bands: BandsConfig = Field(default_factory=BandsConfig)
    lines: LinesConfig = Field(default_factory=LinesConfig)
    compressors: list[CompressorConfig] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _bands_inside_lines(self) -> ThermalConfig:
        lines = self.alarm_lines()
        for mode, band in self.held_bands().items():
            if not lines.safe(mode, band.low) or not lines.safe(mode, band.high):
                raise ValueError(
                    f"bands.{mode} {band} lies beyond the alarm line"
                    f" ({lines.describe(mode)}): it would hold food in the alarm"
                )
        heat = self.held_bands()["heat"]
        if self.over_limit_c < heat.high + OVER_LIMIT_MARGIN_C:
            raise ValueError(
                f"over_limit_c: {self.over_limit_c:g} C is within {OVER_LIMIT_MARGIN_C:g} C"
                f" of the heat band's top ({heat.high:g} C): a heater's overshoot would trip it"
            )
        return self

    def alarm_lines(self) -> Lines:
        """The food code's lines with the overrides of ``[thermal.lines]``."""
        base = FOOD_CODES[self.food_code].lines
        return Lines(
            hot_min_c=_or(self.lines.hot_min_c, base.hot_min_c),
            chill_max_c=_or(self.lines.chill_max_c, base.chill_max_c),
            frozen_max_c=_or(self.lines.frozen_max_c, base.frozen_max_c),
        )

    def held_bands(self) -> dict[str, Band]:
        """The band of each held mode (heat, chill, freeze), overrides applied."""
        code = FOOD_CODES[self.food_code]
        out = {}
        for mode, default in code.bands.items():
            pair = getattr(self.bands, mode)
            out[mode] = Band(*pair) if pair is not None else default
        return out

    def time_limit_s(self) -> float:
        """How long food may be out of its line before it must go ("time as a control")."""
        return _or(self.food_time_limit_s, FOOD_CODES[self.food_code].time_limit_s)

    def safety_summary(self) -> str:
        """One line for ``check-config``: the upper line, the cutoff, the blind cycle,
        and how long a lost sensor is held and an alarm waits."""
        cutoff = f", the heaters' cutoff {self.cutoff.pin} opened" if self.cutoff else ""
        fall = self.fallback
        blind = (
            f"a failed sensor in the cold runs {fall.chill:.0%} (chill) / {fall.freeze:.0%}"
            f" (freeze) of {fall.cycle_s:g} s"
            if fall.chill or fall.freeze
            else "a failed sensor in the cold stops the cooler"
        )
        return (
            f"thermal: at {self.over_limit_c:g} C or over a cabinet's outputs are cut{cutoff}"
            f" and it is disabled until a reset; {blind}; a lost sensor is held"
            f" {self.sensor_grace_s:g} s, alarms wait {self.alarm_raise_s:g} s, the loop is"
            f" stalled after {self.stall_s:g} s without a round"
        )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


class ThermalWiring(StrictModel):
    """A cabinet's ``thermal`` unit: its DS18B20 ``sensor`` and its outputs.

    On GPIO ``bus``: ``heater`` and ``cooler`` (either may be left out), or a shared
    ``compressor`` by name (``cooler`` is then the cabinet's own valve or fan).
    """

    sensor: SensorId
    bus: NameRef | None = None
    heater: OutputPin | None = None
    cooler: OutputPin | None = None
    compressor: NameRef | None = None

    @model_validator(mode="after")
    def _bus_for_outputs(self) -> ThermalWiring:
        if (self.heater is not None or self.cooler is not None) and self.bus is None:
            raise ValueError("bus: required when the unit has a heater or a cooler")
        if self.heater is not None and self.compressor is not None and self.cooler is None:
            raise ValueError(
                "heater: a cabinet on a shared compressor with a heater needs its own"
                " cooler valve: the compressor cools every valve-less cabinet on it,"
                " heating or not"
            )
        return self

    def modes(self) -> frozenset[str]:
        """The modes this hardware can give: ambient always, heat with a heater, chill
        and freeze with a cooler or a compressor."""
        modes = {"ambient"}
        if self.heater is not None:
            modes.add("heat")
        if self.cooler is not None or self.compressor is not None:
            modes |= {"chill", "freeze"}
        return frozenset(modes)
