"""Thermal control: every ``sample_s`` the sensors are read (off the loop, one bulk
conversion), each reading judged (``drivers.w1.SensorTrust``), each unit decided
(``control.py``), the outputs set, the cabinets' ``temperature_c`` and ``thermal``
shown, the alarms raised or cleared through the journal (``alarms.py``), and the
records kept (``logbook.py``).

Time out of temperature counts while the cabinet is occupied (its item sensor, or
``assume_occupied``) and its mode held, and while its temperature is past the line or
unknown (a failed sensor proves nothing). Time the agent was down counts too when the
food was out of temperature before, or is found so after: a power cut stops the
fridge as well as the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from agent.cabinet import Cabinet
from agent.door import DoorState
from agent.thermal import alarms
from agent.thermal.config import ThermalConfig, ThermalWiring
from agent.thermal.control import Compressor, FoodClock, UnitControl
from agent.thermal.logbook import Logbook
from agent.thermal.outputs import ThermalOutputs
from agent.thermal.records import Records
from drivers.w1.ds18b20 import SensorFault, read_all
from drivers.w1.trust import SensorTrust, Verdict

log = structlog.get_logger(__name__)

Reading = float | SensorFault
Publish = Callable[..., None]
ReadAll = Callable[[Path, Iterable[str]], Mapping[str, Reading]]


class _Unit:
    """One cabinet's thermal state between rounds."""

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
        self.verdict = Verdict("missing", None, "not read yet")
        self.mode = "ambient"
        self.mode_set = -1  # the cabinet's thermal_set last seen: a new one re-arms
        self.excursion = False
        self.peak_c = 0.0  # the open excursion's worst temperature
        self.down: tuple[float, bool] | None = None  # (seconds down, unsafe before)


class Thermal:
    """Thermal control of every cabinet with a ``thermal`` unit.

    ``publish``: the journal's ``publish`` (alarm entries); ``disable(key, reason)``:
    a coroutine that disables a cabinet (the locker's command path). ``clock``:
    monotonic seconds; ``wall``: UNIX seconds for the records; ``read(w1_dir,
    sensors)``: one blocking read of every sensor (``drivers.w1.read_all``).

    Lifecycle: ``start()`` (outputs off, the first round, the loop), ``close()`` (the
    loop stopped, every output off, records closed). ``step()`` is one round on given
    readings, for tests on a fake clock.
    """

    def __init__(
        self,
        config: ThermalConfig,
        cabinets: Mapping[int, Cabinet],
        wirings: Mapping[int, ThermalWiring],
        outputs: ThermalOutputs,
        records: Records,
        publish: Publish,
        *,
        disable: Callable[[int, str], Coroutine[Any, Any, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        read: ReadAll = read_all,
    ) -> None:
        self.config = config
        self.outputs = outputs
        self.records = records
        self._publish = publish
        self._disable = disable
        self._clock, self._wall, self._read = clock, wall, read
        now = clock()
        self.units = {key: _Unit(cabinets[key], w, config, now) for key, w in wirings.items()}
        bands = {mode: [b.low, b.high] for mode, b in config.held_bands().items()}
        for unit in self.units.values():
            unit.cabinet.thermal_bands = bands
        self.compressors = {
            c.name: Compressor(config.compressor_min_on_s, config.compressor_min_off_s, now)
            for c in config.compressors
        }
        self._lines = config.alarm_lines()
        self._alarms = alarms.AlarmBook(config.alarm_clear_s)
        self.round_s = 0.0  # how long the last read took
        self.read_timeout_s = 2.0 + len(self.units)  # a conversion per sensor, and some
        self._reading: asyncio.Future[Mapping[str, Reading]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.logbook = Logbook(records, log_every_s=config.log_every_s, wall=wall)
        self._rounds = 0
        for key, (out_s, saved_at, unsafe) in self.logbook.saved_clocks().items():
            if key in self.units:
                self.units[key].food.out_s = out_s
                self.units[key].down = (max(0.0, wall() - saved_at), unsafe)

    @property
    def lease_s(self) -> float:
        """How long an output stays on unless renewed: three rounds as they take now,
        and some; a loop that stops renewing gets its outputs switched off."""
        return 3 * max(self.config.sample_s, self.round_s) + 5.0

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Outputs off, one round at once (so the API shows temperatures from the
        start), then a round every ``sample_s``."""
        self.outputs.all_off()
        self.logbook.start(self.units)
        await self.tick()
        self._task = asyncio.create_task(self._loop(), name="thermal")

    async def close(self) -> None:
        """Stop the rounds; every output off; the food clocks and records kept."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        self.outputs.all_off()
        self.logbook.save_clocks(self.units.values())
        self.records.close()

    def problems(self) -> list[str]:
        """What keeps thermal control from working fully, one line each (for /healthz):
        a sensor not trusted, a unit off or running wild, records not kept."""
        out = []
        for key, unit in self.units.items():
            if unit.verdict.status != "ok":
                out.append(f"cabinet {key}: temperature sensor not trusted: {unit.verdict.reason}")
            if (why := unit.control.fault or unit.control.runaway) is not None:
                out.append(f"cabinet {key}: thermal unit: {why}")
        return out + [n for n in (self.records.notice, self.logbook.failing) if n]

    async def _loop(self) -> None:
        while True:
            started = self._clock()
            try:
                await self.tick()
            except Exception:  # a bug must not leave a heater on: off, and go on
                log.exception("thermal.round_failed")
                self.outputs.all_off()
            await asyncio.sleep(max(0.0, self.config.sample_s - (self._clock() - started)))

    async def tick(self) -> None:
        """One round: read every sensor off the loop, then ``step``. A read that hangs
        (a wedged 1-wire master) is not waited for past ``read_timeout_s``: its sensors
        count as unreadable until it returns, and no second read is started meanwhile."""
        started = self._clock()
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(asyncio.to_thread(self._read_all))
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for may swallow a cancellation
            # that meets the read finishing, and close() would then wait forever.
            async with asyncio.timeout(self.read_timeout_s):
                readings = await asyncio.shield(self._reading)
        except TimeoutError:
            log.error("thermal.read_hung", waited_s=self.read_timeout_s)
            readings = {}
        self.round_s = self._clock() - started
        self.step(readings)

    def _read_all(self) -> dict[int, Reading]:
        by_sensor = self._read(self.config.w1_dir, [u.wiring.sensor for u in self.units.values()])
        return {key: by_sensor[u.wiring.sensor] for key, u in self.units.items()}

    # --- one round -------------------------------------------------------------------

    def step(self, readings: Mapping[int, Reading]) -> None:
        """Judge ``readings`` (by cabinet key; a key left out is unreadable), decide and
        set every output, show the state, raise or clear alarms, keep the records."""
        now = self._clock()
        calls_cold: dict[str, bool] = {name: False for name in self.compressors}
        for key, unit in self.units.items():
            self._judge(now, unit, readings.get(key, SensorFault("unreadable")))
            shared = unit.wiring.compressor
            runs = self.outputs.cooler_on(key) or unit.wiring.cooler is None
            runs = runs and (self.outputs.compressor_on(shared) if shared else unit.own.on)
            door_open = any(d.state != DoorState.CLOSED for _, d in unit.cabinet.doors())
            temp = unit.verdict.temperature_c
            call = unit.control.step(now, temp, cooling_runs=runs, door_open=door_open)
            if shared is not None and call.cool and shared in calls_cold:
                calls_cold[shared] = True
        for name, comp in self.compressors.items():
            self.outputs.compressor(name, comp.decide(now, calls_cold[name]), self.lease_s)
        for key, unit in self.units.items():
            call = unit.control.call
            cool = call.cool
            if unit.wiring.compressor is None:  # its own cooler is its compressor
                failed = unit.verdict.status != "ok" or unit.control.fault is not None
                cool = unit.own.decide(now, call.cool, force_off=failed)
            # A compressor held on by its minimum on time: the heater waits for it.
            heat = call.heat and not cool
            self.outputs.set(key, heat=heat, cool=cool, lease_s=self.lease_s)
            self._show(unit)
            self._food(now, unit)
            self._publish(*self._alarms.changes(now, unit.cabinet, self._wanted(unit)))
        self.logbook.keep(now, self.units.values(), self._lines)
        self._rounds += 1

    def _judge(self, now: float, unit: _Unit, reading: Reading) -> None:
        cabinet = unit.cabinet
        running = self.outputs.heating(cabinet.key) or self.outputs.cooler_on(cabinet.key)
        held = cabinet.thermal_mode != "ambient"  # a unit in charge: the air must move
        before = unit.verdict.status
        unit.verdict = unit.trust.judge(now, reading, unit_running=running or held)
        if unit.verdict.status != before and self._rounds:
            level = log.info if unit.verdict.status == "ok" else log.warning
            level("thermal.sensor", key=cabinet.key, status=unit.verdict.status,
                  reason=unit.verdict.reason)  # fmt: skip
        if cabinet.thermal_set != unit.mode_set:
            if self._rounds:
                level = log.warning if cabinet.occupied else log.info
                level("thermal.mode_set", key=cabinet.key, mode=cabinet.thermal_mode,
                      was=unit.mode, occupied=cabinet.occupied)  # fmt: skip
            unit.mode, unit.mode_set = cabinet.thermal_mode, cabinet.thermal_set
            unit.control.set_mode(unit.mode)

    def _show(self, unit: _Unit) -> None:
        key, temp = unit.cabinet.key, unit.verdict.temperature_c
        shared = unit.wiring.compressor
        cooling = self.outputs.cooler_on(key) or (shared is not None and unit.control.call.cool)
        if shared is not None:
            cooling = cooling and self.outputs.compressor_on(shared)
        unit.cabinet.temperature_c = None if temp is None else round(temp, 1)
        unit.cabinet.thermal = {
            "heating": self.outputs.heating(key),
            "cooling": cooling,
            "sensor": unit.verdict.status,
        }

    def _unsafe(self, unit: _Unit) -> bool:
        temp = unit.verdict.temperature_c
        return unit.mode != "ambient" and (temp is None or not self._lines.safe(unit.mode, temp))

    def _food(self, now: float, unit: _Unit) -> None:
        was = unit.food.exceeded
        occupied = unit.cabinet.occupied or (self.config.assume_occupied and unit.mode != "ambient")
        unsafe = self._unsafe(unit)
        if unit.down is not None and unit.verdict.status != "missing" and occupied:
            down_s, unsafe_before = unit.down  # the agent was down: so was the fridge?
            if unsafe_before or unsafe:
                unit.food.out_s += down_s
                log.warning("thermal.downtime_counted", key=unit.cabinet.key, seconds=down_s)
            unit.down = None
        unit.food.step(now, occupied=occupied, unsafe=unsafe)
        if unit.food.exceeded and not was:
            log.error("thermal.food_time_exceeded", key=unit.cabinet.key, out_s=unit.food.out_s)
            if self.config.disable_when_unsafe and unit.cabinet.enabled and self._disable:
                task = asyncio.create_task(
                    self._disable(unit.cabinet.key, alarms.FOOD_TIME_EXCEEDED)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _wanted(self, unit: _Unit) -> set[str]:
        wanted = set()
        if unit.verdict.status != "ok":
            wanted.add(alarms.SENSOR_FAILED)
        shown = any(a == alarms.OUT_OF_BAND for a, _ in unit.cabinet.alarms)
        if self._unsafe(unit) and (unit.verdict.temperature_c is not None or shown):
            wanted.add(alarms.OUT_OF_BAND)  # unknown is not back in band
        if unit.control.fault is not None or unit.control.runaway is not None:
            wanted.add(alarms.NOT_CONVERGING)
        if unit.food.exceeded:
            wanted.add(alarms.FOOD_TIME_EXCEEDED)
        return wanted
