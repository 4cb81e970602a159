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

from agent.locker.cabinet import Cabinet
from agent.locker.door import DoorState
from agent.thermal import alarms
from agent.thermal.config import ThermalConfig, ThermalWiring
from agent.thermal.control import Compressor
from agent.thermal.logbook import Logbook, clock_synchronized
from agent.thermal.outputs import ThermalOutputs
from agent.thermal.records import Records
from agent.thermal.unit import Unit
from drivers.w1.ds18b20 import SensorFault, in_daemon_thread, read_all
from drivers.w1.trust import NOT_YET

log = structlog.get_logger(__name__)

Reading = float | SensorFault
LOSSY = 0.2  # a sensor losing more of its reads than this is said in /healthz
CLOCK_WAIT_S = 3600.0  # how long an outage's measure waits for a synchronised clock
Publish = Callable[..., None]
ReadAll = Callable[[Path, Iterable[str]], Mapping[str, Reading]]


class Thermal:
    """Thermal control of every cabinet with a ``thermal`` unit.

    ``publish``: the journal's (alarm entries); ``disable(key, reason)``: a
    coroutine disabling a cabinet by the locker's command path. ``clock``: monotonic
    seconds; ``wall``: UNIX seconds, for the records; ``read(w1_dir, sensors)``: one
    blocking read of every sensor. Lifecycle: ``start()`` (outputs off, the loop),
    ``close()`` (the loop stopped, outputs off, records closed); ``step()`` is one
    round on given readings, for tests on a fake clock.
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
        self.units = {key: Unit(cabinets[key], w, config, now) for key, w in wirings.items()}
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
        self.clock_synchronized: Callable[[], bool] = clock_synchronized
        self._rounds = 0
        for key, (out_s, saved_at, unsafe) in self.logbook.saved_clocks().items():
            if key in self.units:
                self.units[key].food.out_s = out_s
                self.units[key].down = (saved_at, unsafe)
        self._started = clock()  # the outage is the wall clock's gap less the time since

    @property
    def lease_s(self) -> float:
        """How long an output stays on unless renewed: a round, the longest its reads
        may take, and some; a loop that stops renewing gets its outputs switched off."""
        return 2 * max(self.config.sample_s, self.round_s) + self.read_timeout_s + 5.0

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Outputs off, then a round now and every ``sample_s``, in the background.

        READY never waits for sensors (16 read one by one take 12 s); until the first
        round a unit shows ``sensor: missing``.
        """
        self.outputs.all_off()
        self.logbook.start(self.units)
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
        self.logbook.close(self.units.values())
        self.records.close()

    def problems(self) -> list[str]:
        """What keeps thermal control from working fully, one line each (for /healthz):
        a sensor not trusted, a unit off or running wild, records not kept."""
        out = []
        for key, unit in self.units.items():
            if unit.verdict.status != "ok" and unit.verdict.reason != NOT_YET:
                out.append(f"cabinet {key}: temperature sensor not trusted: {unit.verdict.reason}")
            if (why := unit.control.fault or unit.control.runaway) is not None:
                out.append(f"cabinet {key}: thermal unit: {why}")
            if unit.output_error is not None:
                out.append(f"cabinet {key}: thermal outputs refused: {unit.output_error}")
            if unit.trust.loss > LOSSY:
                out.append(f"cabinet {key}: sensor loses {unit.trust.loss:.0%} of its reads:"
                           " check its wiring and pull-up")  # fmt: skip
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
        """One round: read every sensor off the loop, then ``step``.

        A read that hangs (a wedged 1-wire master) is not waited for past
        ``read_timeout_s``: its sensors count as unreadable until it returns, and no
        second read starts meanwhile.
        """
        started = self._clock()
        if self._reading is None or self._reading.done():
            self._reading = in_daemon_thread(self._read_all)
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
            _reconcile(comp, self.outputs.compressor_on(name), now)
            self.outputs.compressor(name, comp.decide(now, calls_cold[name]), self.lease_s)
        for key, unit in self.units.items():
            call = unit.control.call
            cool = call.cool
            if unit.wiring.compressor is None:  # its own cooler is its compressor
                _reconcile(unit.own, self.outputs.cooler_on(key), now)
                failed = unit.verdict.status != "ok" or unit.control.fault is not None
                cool = unit.own.decide(now, call.cool, force_off=failed)
            # A compressor held on by its minimum on time: the heater waits for it.
            heat = call.heat and not cool
            self._set_outputs(unit, heat=heat, cool=cool)
            unit.show(self.outputs)
            self._food(now, unit)
            hold = 0.0 if unit.mode_changed else None
            if changes := self._alarms.changes(now, unit.cabinet, unit.wanted(self._lines), hold):
                self._publish(*changes)
        self.logbook.keep(now, self.units.values(), self._lines)
        self._rounds += 1

    def _wall_known(self, now: float) -> bool:
        """Whether the wall clock can measure an outage: synchronised (a Pi without an
        RTC boots at the time it stopped), or an hour gone without (then as it is)."""
        return self.clock_synchronized() or now - self._started >= CLOCK_WAIT_S

    def _set_outputs(self, unit: Unit, *, heat: bool, cool: bool) -> None:
        """One cabinet's outputs; a driver that refuses (a GPIO line gone bad) is said,
        that cabinet's outputs are tried off, and the other cabinets go on."""
        key = unit.cabinet.key
        try:
            self.outputs.set(key, heat=heat, cool=cool, lease_s=self.lease_s)
        except Exception as exc:
            if unit.output_error is None:
                log.exception("thermal.outputs_refused", key=key)
            unit.output_error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                self.outputs.set(key, heat=False, cool=False, lease_s=self.lease_s)
        else:
            unit.output_error = None

    def _judge(self, now: float, unit: Unit, reading: Reading) -> None:
        cabinet = unit.cabinet
        running = self.outputs.heating(cabinet.key) or self.outputs.cooler_on(cabinet.key)
        held = cabinet.thermal_mode != "ambient"  # a unit in charge: the air must move
        before = unit.verdict.status
        unit.verdict = unit.trust.judge(now, reading, unit_running=running, held=held)
        unit.mode_changed = False
        if unit.verdict.status != before and self._rounds:
            level = log.info if unit.verdict.status == "ok" else log.warning
            level("thermal.sensor", key=cabinet.key, status=unit.verdict.status,
                  reason=unit.verdict.reason)  # fmt: skip
        if cabinet.thermal_set != unit.mode_set:
            if self._rounds:
                level = log.warning if cabinet.occupied else log.info
                level("thermal.mode_set", key=cabinet.key, mode=cabinet.thermal_mode,
                      was=unit.mode, occupied=cabinet.occupied)  # fmt: skip
            unit.mode_changed = unit.mode != cabinet.thermal_mode
            unit.mode, unit.mode_set = cabinet.thermal_mode, cabinet.thermal_set
            unit.control.set_mode(unit.mode)

    def _food(self, now: float, unit: Unit) -> None:
        was = unit.food.exceeded
        cabinet = unit.cabinet
        occupied = cabinet.occupied
        if self.config.assume_occupied:  # no item sensors: a pickup empties the cabinet
            front_open = cabinet.front.state != DoorState.CLOSED
            occupied = not (front_open and not unit.front_open)
            unit.front_open = front_open
        unsafe = unit.unsafe(self._lines)
        if unit.down is not None and unit.verdict.reason != NOT_YET and self._wall_known(now):
            saved_at, unsafe_before = unit.down  # the agent was down: so was the fridge?
            down_s = max(0.0, self._wall() - saved_at - (now - self._started))
            if occupied and (unsafe_before or unsafe):
                unit.food.out_s += down_s
                log.warning("thermal.downtime_counted", key=cabinet.key, seconds=down_s)
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


def _reconcile(compressor: Compressor, powered: bool, now: float) -> None:
    """A compressor its switch's backstop cut (a stalled round) is off since now: its
    minimum off time runs from here, never from what the controller last asked."""
    if compressor.on and not powered:
        compressor.on, compressor.since_s = False, now
