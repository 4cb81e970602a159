"""Thermal control: every ``sample_s`` the sensors are read (off the loop, one bulk
conversion), each reading judged (``drivers.w1.SensorTrust``), each unit decided
(``control.py``), its safety shut-offs latched (``latch.py``), the outputs set, the
cabinets' ``temperature_c`` and ``thermal`` shown, the alarms raised or cleared
through the journal (``alarms.py``), and the records kept (``logbook.py``).

Time out of temperature counts while the cabinet is occupied (its item sensor, or
``assume_occupied``) and its mode held, and while its temperature is past the line or
unknown (a failed sensor proves nothing). A cabinet known empty past its line is
coming up to temperature (a pull-down or pre-heat): no ``temperature_out_of_band``,
recorded apart from the excursions (``unit.py``, ADR 0021). Time the agent was down
counts too, as far as evidence that survives the outage tells (``outage.py``); the
food clocks and the latches kept before a restart are taken up at start
(``foodtime.py``). A watcher apart from the rounds finds a loop that stopped
completing them (``stall.py``).

Over ``over_limit_c`` (and, with ``disable_when_unsafe``, past the food's time) a
cabinet is disabled through the locker's own command path (``disable``). Errors:
``reset`` raises ``NotFound`` for a cabinet without a unit; a round that raises
turns every output off and is logged, never propagated out of the loop.
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
from agent.locker.errors import NotFound
from agent.thermal import alarms, clock, foodtime
from agent.thermal.config import ThermalConfig, ThermalWiring
from agent.thermal.control import Call, Compressor
from agent.thermal.latch import Latch
from agent.thermal.logbook import Logbook
from agent.thermal.outage import Outage
from agent.thermal.outputs import ThermalOutputs
from agent.thermal.records import Records
from agent.thermal.stall import Liveness
from agent.thermal.unit import Unit
from drivers.threads import in_daemon_thread
from drivers.w1.ds18b20 import SensorFault, read_all

log = structlog.get_logger(__name__)

Reading = float | SensorFault
CLOCK_ASK_S = 30.0  # how often the clock's evidence is asked until it is known right
ROUND_FAILED_LOG_S = 60.0  # a round that keeps raising is logged this often
Publish = Callable[..., None]
ReadAll = Callable[[Path, Iterable[str]], Mapping[str, Reading]]
ClockEvidence = Callable[[], tuple[bool | None, str]]


class Thermal:
    """Thermal control of every cabinet with a ``thermal`` unit.

    ``publish``: the journal's (alarm entries); ``disable(key, reason)``: a
    coroutine disabling a cabinet by the locker's command path. ``clock``: monotonic
    seconds; ``wall``: UNIX seconds, for the records; ``read(w1_dir, sensors)``: one
    blocking read of every sensor; ``clock_evidence()``: whether the wall clock is
    known right and what says so (blocking). Lifecycle: ``start()`` (outputs off, the
    rounds, the watcher), ``close()`` (stopped, outputs off, records closed);
    ``step()`` is one round on given readings, for tests on a fake clock.
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
        clock_evidence: ClockEvidence = clock.synchronized,
    ) -> None:
        self.config = config
        self.outputs = outputs
        self.records = records
        self._publish = publish
        self._disable = disable
        self._clock, self._wall, self._read = clock, wall, read
        self.clock_evidence = clock_evidence
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
        self._alarms = alarms.AlarmBook(config.alarm_clear_s, config.alarm_raise_s)
        self.round_s = 0.0  # how long the last read took
        self.read_timeout_s = 2.0 + len(self.units)  # a conversion per sensor, and some
        self._reading: asyncio.Future[Mapping[str, Reading]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.logbook = Logbook(records, log_every_s=config.log_every_s, wall=wall)
        self.outage = Outage(
            self.logbook.last_record,
            drift_c_per_s=config.drift_max_c_per_h / 3600.0,
            clock=clock,
            wall=wall,
        )
        self.liveness = Liveness(clock, config.stall_s, lambda: self.lease_s)
        self._rounds = 0
        self._failed_logged: float | None = None
        foodtime.restore(self.units, self.logbook, records)

    @property
    def lease_s(self) -> float:
        """How long an output stays on unless renewed: a round, the longest its reads
        may take, and some; a loop that stops renewing gets its outputs switched off."""
        return 2 * max(self.config.sample_s, self.round_s) + self.read_timeout_s + 5.0

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Outputs off, then a round now and every ``sample_s``, the stall watcher and
        the clock's evidence, in the background.

        READY never waits for sensors (16 read one by one take 12 s); until the first
        round a unit shows ``sensor: missing``.
        """
        self.outputs.all_off()
        self.logbook.start(self.units)
        self.liveness.round_done()  # the start counts as a round
        for coro, name in (
            (self._loop(), "thermal"),
            (self._watch(), "thermal-watch"),
            (self._ask_clock(), "thermal-clock"),
        ):
            self._spawn(coro, name)

    async def close(self) -> None:
        """Stop the rounds; every output off; the food clocks and records kept."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.outputs.all_off()
        self.logbook.close(self.units.values())
        self.records.close()

    def stalled(self) -> str | None:
        """Why the loop counts as stalled (no round completed within the bound), for
        the watchdog; None while it turns."""
        return self.liveness.reason()

    def problems(self) -> list[str]:
        """What keeps thermal control from working fully, one line each (for /healthz).

        The loop stalled, a unit latched off, a sensor not trusted or noisy, a unit
        running wild, records not kept, the clock not known right.
        """
        out = [why] if (why := self.stalled()) else []
        for unit in self.units.values():
            out += unit.problems()
        return out + [n for n in (self.records.notice, self.logbook.failing) if n]

    def reset(self, key: int, by: str) -> list[Latch]:
        """A technician's reset of cabinet ``key``'s latches (``by``: who, for the log and
        the records); answers what was cleared. ``NotFound`` without a thermal unit."""
        unit = self.units.get(key)
        if unit is None:
            raise NotFound(f"cabinet {key} has no thermal unit")
        cleared = unit.reset()
        log.warning(
            "thermal.reset", key=key, by=by, cleared=[latch.describe() for latch in cleared]
        )
        with self.logbook.saying():
            self.records.reset(key, self._wall(), by, [(c.alarm, c.why) for c in cleared])
        return cleared

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _loop(self) -> None:
        while True:
            started = self._clock()
            try:
                await self.tick()
            except Exception:  # a bug must not leave a heater on: off, and say so
                self._round_failed()
            await asyncio.sleep(max(0.0, self.config.sample_s - (self._clock() - started)))

    def _round_failed(self) -> None:
        """A round raised: every output off; logged at once, then once a minute (the
        stall watcher tells the rest)."""
        now = self._clock()
        if self._failed_logged is None or now - self._failed_logged >= ROUND_FAILED_LOG_S:
            self._failed_logged = now
            log.exception("thermal.round_failed")
        with contextlib.suppress(Exception):
            self.outputs.all_off()

    async def _watch(self) -> None:
        """Apart from the rounds: a loop that stopped completing them is stalled."""
        while True:
            await asyncio.sleep(min(self.config.sample_s, 5.0))
            self.watch()

    def watch(self) -> None:
        """Once a stall is found: outputs off (the cutoff open), temperatures and
        outputs shown unknown, ``thermal_stalled`` raised on every thermal cabinet."""
        if self.liveness.found() is None:
            return
        with contextlib.suppress(Exception):
            self.outputs.all_off()
        now = self._clock()
        for unit in self.units.values():
            try:
                unit.show(self.outputs, stalled=True)
                told = self._alarms.told(unit.cabinet)
                wanted = told | {alarms.STALLED}
                if changes := self._alarms.changes(now, unit.cabinet, wanted):
                    self._publish(*changes)
            except Exception:  # the watchdog is the last word
                log.exception("thermal.stall_unsaid", key=unit.cabinet.key)

    async def _ask_clock(self) -> None:
        """Ask whether the wall clock is known right, until it is."""
        while not self.outage.clock_right:
            # A daemon thread: a chronyc that hangs never holds up the agent's stop.
            synced, by = await in_daemon_thread(self.clock_evidence, "clock-probe")
            self.clock_known(synced, by)
            await asyncio.sleep(CLOCK_ASK_S)

    def clock_known(self, synced: bool | None, by: str) -> None:
        """The clock's evidence: once it is known right, what was written unsure is
        rewritten and outages wait no more."""
        if self.outage.evidence(synced, by):
            self.logbook.correct(self._wall(), self._clock())

    async def tick(self) -> None:
        """One round: read every sensor off the loop, then ``step``.

        A read that hangs (a wedged 1-wire master) is not waited for past
        ``read_timeout_s``: its sensors count as unreadable until it returns, and no
        second read starts meanwhile.
        """
        started = self._clock()
        if self._reading is None or self._reading.done():
            self._reading = in_daemon_thread(self._read_all, "thermal-read")
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
        """One round on ``readings`` (by cabinet key; a key left out is unreadable).

        Decide and set every output, latch what must latch, show the state, raise or clear
        alarms, keep the records.
        """
        now, wall = self._clock(), self._wall()
        calls_cold: dict[str, bool] = {name: False for name in self.compressors}
        for key, unit in self.units.items():
            door_open = any(d.seen != DoorState.CLOSED for _, d in unit.cabinet.doors())
            self._judge(now, unit, readings.get(key, SensorFault("unreadable")), door_open)
            unit.label(self._lines)  # an empty cabinet out of line: coming up, no food
            shared = unit.wiring.compressor
            runs = self.outputs.cooler_on(key) or unit.wiring.cooler is None
            runs = runs and (self.outputs.compressor_on(shared) if shared else unit.own.on)
            temp = unit.verdict.temperature_c
            if not unit.latched:
                unit.control.step(now, temp, cooling_runs=runs, door_open=door_open)
            self._latch(unit, wall)
            if unit.latched:
                unit.control.call = Call()
            if shared is not None and unit.control.call.cool and shared in calls_cold:
                calls_cold[shared] = True
        for name, comp in self.compressors.items():
            _reconcile(comp, self.outputs.compressor_on(name), now)
            self.outputs.compressor(name, comp.decide(now, calls_cold[name]), self.lease_s)
        for key, unit in self.units.items():
            call = unit.control.call
            cool = call.cool
            if unit.wiring.compressor is None:  # its own cooler is its compressor
                _reconcile(unit.own, self.outputs.cooler_on(key), now)
                # A lost sensor keeps the minimum on time; a latch stops it at once.
                cool = unit.own.decide(now, call.cool, force_off=unit.latched)
            # A compressor held on by its minimum on time: the heater waits for it.
            heat = call.heat and not cool
            self._set_outputs(unit, heat=heat, cool=cool)
            unit.show(self.outputs)
            self._food(now, unit)
            hold = 0.0 if unit.mode_changed else None
            wanted = unit.wanted(self._lines)
            if self.liveness.stalled:
                wanted.add(alarms.STALLED)  # until this round completes
            cleared, unit.cleared = unit.cleared, set()
            changes = self._alarms.changes(now, unit.cabinet, wanted, hold, at_once=cleared)
            if changes:
                self._publish(*changes)
        self.outputs.supply(not any(u.cut for u in self.units.values()), self.lease_s)
        self.logbook.keep(now, self.units.values(), self._lines, not self.outage.clock_right)
        self._rounds += 1
        self.liveness.round_done()

    def _latch(self, unit: Unit, wall: float) -> None:
        """Latch what this round's facts call for: logged, kept, and over the limit the
        cabinet disabled by the locker's own command path."""
        for latch in unit.latch_now(wall):
            key = unit.cabinet.key
            log.error("thermal.latched", key=key, alarm=latch.alarm, why=latch.why, cut=latch.cut)
            with self.logbook.saying():
                self.records.latched(key, latch.alarm, latch.why, latch.since, latch.cut)
            if latch.alarm == alarms.OVER_LIMIT and unit.cabinet.enabled:
                self._disable_later(key, alarms.OVER_LIMIT)

    def _disable_later(self, key: int, reason: str) -> None:
        if self._disable is None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: a test's bare step
            self._spawn(self._disable(key, reason), f"thermal-disable-{key}")

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

    def _judge(self, now: float, unit: Unit, reading: Reading, door_open: bool) -> None:
        key, shared = unit.cabinet.key, unit.wiring.compressor
        running = self.outputs.heating(key) or self.outputs.cooler_on(key)
        if shared is not None and unit.wiring.cooler is None:  # cooled when it runs
            running = running or self.outputs.compressor_on(shared)
        unit.judge(now, reading, running=running, door_open=door_open, said=bool(self._rounds))

    def _food(self, now: float, unit: Unit) -> None:
        """The unit's food clock (``foodtime.py``); its time just ran out: with
        ``disable_when_unsafe``, the cabinet disabled."""
        assume = self.config.assume_occupied
        exceeded = foodtime.count(now, unit, self._lines, self.outage, assume_occupied=assume)
        if exceeded and self.config.disable_when_unsafe and unit.cabinet.enabled:
            self._disable_later(unit.cabinet.key, alarms.FOOD_TIME_EXCEEDED)


def _reconcile(compressor: Compressor, powered: bool, now: float) -> None:
    """A compressor its switch's backstop cut (a stalled round) is off since now: its
    minimum off time runs from here, never from what the controller last asked."""
    if compressor.on and not powered:
        compressor.on, compressor.since_s = False, now
