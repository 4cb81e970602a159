"""Thermal physics of food cabinets, shown to the agent as the kernel's 1-wire files.

Each cabinet is one lumped body (air and food) exchanging heat with the room
through its walls, and much faster through an open door; a heater adds power, a
cooler (a compressor's evaporator) removes it. :meth:`ThermalBody.step` uses the
exact solution of that first-order equation, so any step is stable: tests take
60 s steps and cover hours in milliseconds.

:class:`SensorFile` writes a DS18B20's ``w1_slave`` file as the kernel's
``w1_therm`` does (the scratchpad's nine bytes with their Dallas CRC, ``YES``,
``t=<millidegrees>``), and plays its faults: unplugged, CRC errors, the power-on
85 C, a value stuck. :class:`ThermalPlant` holds every cabinet's body and
sensor; :func:`run_plant` (or :class:`PlantRunner`) advances it in real time.

Fates a test sets on a body: ``heater_failed``, ``cooler_failed`` (a dead
compressor), ``stuck_on`` (a welded relay: that unit runs whatever is commanded).
``heater_supply`` False is the heaters' power cut by a contactor: no heat, welded
relay or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from drivers.w1 import MAX_C, MIN_C, check_sensor_id

log = structlog.get_logger(__name__)

Outputs = Mapping[int, tuple[bool, bool]]
"""(heating, cooling) as commanded, per cabinet key."""

SensorFate = Literal["missing", "crc", "power_on", "stuck"]

STEP_C = 0.0625
"""A DS18B20's resolution at 12 bits, degrees C."""

# The scratchpad a DS18B20 holds at power-up (datasheet): 85 C (POWER_ON_C), TH 75, TL 70.
_POWER_ON_SCRATCHPAD = bytes.fromhex("5005 4b46 7fff 0c10 1c")


@dataclass
class ThermalBody:
    """One cabinet's air and food: temperature (degrees C) and how it exchanges heat.

    ``capacity_j_per_k``: heat capacity; ``room_ua_w_per_k``: exchange with the room
    with the door shut, ``door_ua_w_per_k`` added while a door is open;
    ``heater_w``/``cooler_w``: heat added/removed while on. Fates: ``heater_failed``
    and ``cooler_failed`` (commanded on, gives nothing), ``stuck_on`` (a welded relay:
    that unit runs whatever is commanded). ``both_on_s`` counts seconds during which
    heating and cooling were commanded together (a controller must keep it 0).
    Raises ``ValueError`` for a capacity or room exchange <= 0 or a negative power.
    """

    temperature_c: float
    capacity_j_per_k: float = 20_000.0
    room_ua_w_per_k: float = 2.0
    door_ua_w_per_k: float = 30.0
    heater_w: float = 300.0
    cooler_w: float = 250.0
    heater_failed: bool = False
    cooler_failed: bool = False
    stuck_on: Literal["heater", "cooler"] | None = None
    heater_supply: bool = True  # False: a cutoff contactor took the heater's power away
    both_on_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.capacity_j_per_k > 0 or not self.room_ua_w_per_k > 0:
            raise ValueError("capacity_j_per_k and room_ua_w_per_k must be > 0")
        if min(self.door_ua_w_per_k, self.heater_w, self.cooler_w) < 0:
            raise ValueError("door_ua_w_per_k, heater_w and cooler_w must be >= 0")

    def power_w(self, *, heating: bool, cooling: bool) -> float:
        """Net heat into the body (W) for these commanded outputs, after the fates."""
        heat = (heating or self.stuck_on == "heater") and not self.heater_failed
        heat = heat and self.heater_supply
        cool = (cooling or self.stuck_on == "cooler") and not self.cooler_failed
        return self.heater_w * heat - self.cooler_w * cool

    def step(
        self, dt_s: float, *, room_c: float, heating: bool, cooling: bool, door_open: bool
    ) -> None:
        """Advance ``dt_s`` seconds (>= 0) with these outputs held: C dT/dt = P - UA (T - room).

        Exact over the step: T relaxes toward room + P/UA with time constant C/UA.
        Raises ``ValueError`` for a negative ``dt_s``.
        """
        if dt_s < 0:
            raise ValueError(f"dt_s must be >= 0, not {dt_s}")
        if heating and cooling:
            self.both_on_s += dt_s
        ua = self.room_ua_w_per_k + (self.door_ua_w_per_k if door_open else 0.0)
        settled_c = room_c + self.power_w(heating=heating, cooling=cooling) / ua
        decay = math.exp(-ua * dt_s / self.capacity_j_per_k)
        self.temperature_c = settled_c + (self.temperature_c - settled_c) * decay


def _crc8(data: bytes) -> int:
    """Dallas/Maxim 1-wire CRC-8 (x^8 + x^5 + x^4 + 1, reflected), as the kernel checks it."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def scratchpad(raw: int) -> bytes:
    """A DS18B20's nine scratchpad bytes for ``raw`` (temperature in 1/16 C, int16)."""
    body = raw.to_bytes(2, "little", signed=True) + bytes(
        [0x4B, 0x46, 0x7F, 0xFF, 0x10 - (raw & 0x0F), 0x10]
    )
    return body + bytes([_crc8(body)])


def w1_slave_text(pad: bytes, *, crc_ok: bool = True) -> str:
    """The kernel's ``w1_slave`` text for a scratchpad (``w1_therm``'s format and maths:
    millidegrees = raw * 1000 / 16, truncated toward zero as C does)."""
    raw = int.from_bytes(pad[:2], "little", signed=True)
    milli = abs(raw) * 1000 // 16 * (1 if raw >= 0 else -1)
    hexes = "".join(f"{b:02x} " for b in pad)
    return f"{hexes}: crc={pad[8]:02x} {'YES' if crc_ok else 'NO'}\n{hexes}t={milli}\n"


class SensorFile:
    """One DS18B20 as the kernel shows it: ``<w1_dir>/<sensor>/w1_slave``.

    ``fault`` (a fate, None: healthy) changes what :meth:`write` does: ``"missing"``
    removes the sensor's directory, ``"crc"`` writes a corrupted scratchpad with
    ``NO``, ``"power_on"`` the power-up scratchpad (85 C, good CRC), ``"stuck"``
    keeps the last raw value. Raises ``ValueError`` for a sensor id that is not a
    DS18B20's.
    """

    __slots__ = ("_raw", "directory", "fault", "path", "sensor")

    def __init__(self, w1_dir: Path, sensor: str) -> None:
        self.sensor = check_sensor_id(sensor)
        self.directory = Path(w1_dir) / sensor
        self.path = self.directory / "w1_slave"
        self.fault: SensorFate | None = None
        self._raw: int | None = None  # the last raw value written

    @property
    def raw(self) -> int | None:
        """The last raw value written (1/16 C), None before the first write."""
        return self._raw

    def write(self, temperature_c: float) -> None:
        """Show ``temperature_c`` (quantised to 0.0625 C, clamped to -55..125 C) as the
        kernel would, through the fault if one is set; atomic (tmp file + rename)."""
        if self.fault == "missing":
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        clamped = min(max(temperature_c, MIN_C), MAX_C)
        raw = round(clamped / STEP_C)
        if self.fault == "stuck" and self._raw is not None:
            raw = self._raw
        self._raw = raw
        if self.fault == "power_on":
            text = w1_slave_text(_POWER_ON_SCRATCHPAD)
        elif self.fault == "crc":
            pad = scratchpad(raw)
            text = w1_slave_text(pad[:8] + bytes([pad[8] ^ 0x5A]), crc_ok=False)
        else:
            text = w1_slave_text(scratchpad(raw))
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / ".w1_slave.tmp"
        tmp.write_text(text, encoding="ascii")
        os.replace(tmp, self.path)


class ThermalPlant:
    """Every thermal cabinet's body and sensor file, in one room (``room_c``, degrees C).

    Raises ``ValueError`` for a key or sensor added twice, or asked for and not there.
    """

    __slots__ = ("_bodies", "_sensors", "room_c", "w1_dir")

    def __init__(self, w1_dir: Path, room_c: float = 22.0) -> None:
        self.w1_dir = Path(w1_dir)
        self.room_c = room_c
        self._bodies: dict[int, ThermalBody] = {}
        self._sensors: dict[int, SensorFile] = {}

    @property
    def keys(self) -> list[int]:
        """The cabinets played, in the order added."""
        return list(self._bodies)

    def add(self, key: int, sensor: str, body: ThermalBody) -> None:
        """Play cabinet ``key``: its body, and its sensor file (written at once)."""
        if key in self._bodies:
            raise ValueError(f"cabinet {key} is already in the plant")
        if any(s.sensor == sensor for s in self._sensors.values()):
            raise ValueError(f"sensor {sensor} already belongs to another cabinet")
        self.w1_dir.mkdir(parents=True, exist_ok=True)
        sensor_file = SensorFile(self.w1_dir, sensor)
        sensor_file.write(body.temperature_c)
        self._bodies[key] = body
        self._sensors[key] = sensor_file

    def body(self, key: int) -> ThermalBody:
        """Cabinet ``key``'s body (set its fates on it)."""
        self._known(key)
        return self._bodies[key]

    def sensor(self, key: int) -> SensorFile:
        """Cabinet ``key``'s sensor file (set its ``fault`` on it)."""
        self._known(key)
        return self._sensors[key]

    def advance(self, dt_s: float, outputs: Outputs, doors_open: Mapping[int, bool]) -> None:
        """Step every body ``dt_s`` seconds with its outputs (missing: off) and door
        (missing: shut), then write every sensor file. Raises ``ValueError`` for a
        negative ``dt_s`` or a key the plant does not play."""
        for key in (*outputs, *doors_open):
            self._known(key)
        for key, body in self._bodies.items():
            heating, cooling = outputs.get(key, (False, False))
            body.step(
                dt_s,
                room_c=self.room_c,
                heating=heating,
                cooling=cooling,
                door_open=doors_open.get(key, False),
            )
            self._sensors[key].write(body.temperature_c)

    def _known(self, key: int) -> None:
        if key not in self._bodies:
            raise ValueError(f"cabinet {key} is not in the thermal plant (has {self.keys})")


async def run_plant(
    plant: ThermalPlant,
    outputs: Callable[[], Outputs],
    doors_open: Callable[[], Mapping[int, bool]],
    *,
    tick_s: float = 1.0,
    speed: float = 1.0,
) -> None:
    """Advance ``plant`` in real time until cancelled: every ``tick_s`` seconds, by the
    time elapsed times ``speed`` (60: a simulated minute per second), with the
    outputs and doors as the callables give them then. Raises ``ValueError`` for a
    ``tick_s`` or ``speed`` <= 0."""
    if not tick_s > 0 or not speed > 0:
        raise ValueError(f"tick_s and speed must be > 0, not {tick_s} and {speed}")
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        await asyncio.sleep(tick_s)
        now = loop.time()
        # NOTE: in the loop, not a thread: a few dozen bytes per sensor, and a
        # cancelled thread could still write into a directory being torn down.
        plant.advance((now - last) * speed, outputs(), doors_open())
        last = now


class PlantRunner:
    """:func:`run_plant` as a part with a lifecycle: ``start()``, ``close()`` (idempotent)."""

    __slots__ = ("_task", "doors_open", "outputs", "plant", "speed", "tick_s")

    def __init__(
        self,
        plant: ThermalPlant,
        outputs: Callable[[], Outputs],
        doors_open: Callable[[], Mapping[int, bool]],
        *,
        tick_s: float = 1.0,
        speed: float = 1.0,
    ) -> None:
        self.plant = plant
        self.outputs = outputs
        self.doors_open = doors_open
        self.tick_s = tick_s
        self.speed = speed
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start advancing the plant (its sensor files exist from ``add``)."""
        if self._task is None:
            coro = run_plant(
                self.plant, self.outputs, self.doors_open, tick_s=self.tick_s, speed=self.speed
            )
            self._task = asyncio.get_running_loop().create_task(coro, name="thermal-plant")
            log.info("thermal plant started", cabinets=self.plant.keys, speed=self.speed)

    async def close(self) -> None:
        """Stop advancing; the files keep their last contents. Re-raises what stopped it."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("thermal plant closed")
