"""The locker: its cabinets, the sensors coming in, the commands going out.

A door change flows one way::

    hardware --door_sensed--> Door.sense --DoorSeen--> Journal --append--> Outbox
                                                          |--apply--> what the API shows
                                                          '--observe--> Supervisor, Actions,
                                                                        Indicators

A command flows the other way: ``submit`` (admitted or ``Busy`` at once, bounded
per cabinet and in all) -> ``command`` (deduplicated by id) -> ``execute`` (opens of
one door that pile up are carried out once; one command at a time per cabinet) ->
``Actions`` -> the hardware (the lock's pulse gap); the switch it moves comes back
in through ``door_sensed`` like any other change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from agent.config import Side
from agent.locker.actions import Actions, Actuator, door_of
from agent.locker.cabinet import Cabinet
from agent.locker.commands import CabinetCommand
from agent.locker.door import DoorSeen
from agent.locker.errors import Busy, Conflict, LockerError, NotFound, Unavailable
from agent.locker.health import Health
from agent.locker.idempotency import INTERRUPTED, CommandLog
from agent.locker.indicator import Indicators, Link
from agent.locker.intake import PER_CABINET, SPARE, Intake
from agent.locker.journal import BoardSeen, Journal, Startup, StorageNotice
from agent.locker.supervision import AlarmChange, Check, Supervisor
from agent.storage.outbox import Outbox
from agent.storage.store import StateStore, StoreError

log = structlog.get_logger(__name__)


class Locker:
    """Every cabinet, by key. Seconds: ``confirm_s``, ``jam_retry_s``, ``timer_s``, ``announce_s``
    (``Actions``), ``left_open_s`` (``Supervisor``), ``health_interval_s`` (``Health``)."""

    def __init__(
        self,
        cabinets: Iterable[Cabinet],
        outbox: Outbox,
        store: StateStore,
        *,
        confirm_s: float = 2.0,
        jam_retry_s: float = 1.0,
        timer_s: float = 15.0,
        left_open_s: float = 120.0,
        announce_s: float = 0.5,
        health_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cabinets: dict[int, Cabinet] = {c.key: c for c in cabinets}
        self._store = store
        try:
            saved_settings = store.settings()
        except StoreError as exc:  # the config's defaults, said loudly
            log.error("settings.unreadable", error=str(exc))
            saved_settings = {}
        for key, saved in saved_settings.items():  # what commands set before a restart
            if key in self.cabinets:
                cabinet = self.cabinets[key]
                cabinet.enabled, cabinet.size = saved["enabled"], saved["size"]
                cabinet.thermal_mode = saved["thermal_mode"]
        self._clock = clock
        self.journal = Journal(outbox, self.snapshot)
        self.supervisor = Supervisor(self.cabinets, left_open_s=left_open_s, clock=clock)
        self.indicators = Indicators(self.cabinets)
        self.actions = Actions(
            self.cabinets,
            self.journal,
            self.indicators,
            confirm_s=confirm_s,
            jam_retry_s=jam_retry_s,
            timer_s=timer_s,
            announce_s=announce_s,
        )
        for observer in (
            _log_entry,
            self.supervisor.observe,
            self.actions.observe,
            self.indicators.observe,
            self._schedule_check,
        ):
            self.journal.observe(observer)
        self.health = Health(self.journal, min_interval_s=health_interval_s, clock=clock)
        self._commands = CommandLog(store)
        self.intake = Intake(PER_CABINET, 2 * len(self.cabinets) + SPARE)
        self._opening: dict[tuple[int, Side], asyncio.Future[None]] = {}  # opens in progress
        self.on_command: Callable[[str, str], None] | None = None  # (command, result)
        self._started = False
        self._notices: list[str] = []  # storage notices before start
        self._check: asyncio.TimerHandle | None = None

    def attach(self, actuator: Actuator) -> None:
        """The hardware is up: commands may act, indicators show."""
        self.actions.attach(actuator)
        self.indicators.attach(actuator.indicate)

    async def close(self) -> None:
        """Stop timers and pending closes (the hardware turns its outputs off itself)."""
        if self._check is not None:
            self._check.cancel()
        self.journal.close()
        self.health.close()
        await self.actions.close()

    def get(self, key: int) -> Cabinet:
        """The cabinet with the cloud's ``key``; ``NotFound`` when there is none."""
        try:
            return self.cabinets[key]
        except KeyError:
            raise NotFound(f"no cabinet with key {key}") from None

    # --- sensing: the hardware's sink -------------------------------------------

    def door_sensed(self, key: int, side: Side, is_open: bool | None) -> None:
        """A door switch read ``is_open`` (None: its board does not answer)."""
        door = self.cabinets[key].door(side)
        if door is None or (entry := door.sense(key, side, is_open)) is None:
            return
        self.actions.sensed()
        if self._started:
            self.journal.publish(entry)
        else:  # the start-up snapshot will carry it
            door.settle()

    def door_fully_open(self, key: int, side: Side, is_open: bool) -> None:
        """The end switch of a motorised door (not reported: the closed switch is)."""
        door = self.cabinets[key].door(side)
        if door is not None and door.fully_open != is_open:
            door.fully_open = is_open
            self.actions.sensed()
            self.indicators.refresh(key)

    def item_sensed(self, key: int, present: bool) -> None:
        """An item sensor: the cabinet is occupied or empty."""
        cabinet = self.cabinets[key]
        if cabinet.occupied != present:
            cabinet.occupied = present
            log.info("cabinet.occupied", key=key, occupied=present)

    def board_health(self, bus: str, board: int, online: bool) -> None:
        """A lock board went silent or answers again."""
        self.health.board(bus, board, online)

    def bus_health(self, bus: str, online: bool) -> None:
        """Every board of a bus went silent (or its port closed), or one answers again."""
        self.health.bus(bus, online)

    def storage_replaced(self, notice: str) -> None:
        """A damaged store was set aside and replaced: the cloud gets a new snapshot."""
        if self._started:
            self.journal.publish(StorageNotice(notice))
        else:
            self._notices.append(notice)

    def set_link(self, link: Link) -> None:
        """The cloud link's state, for the indicators."""
        self.indicators.set_link(link)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every shown door status, in the feedback's shape."""
        return [e for c in self.cabinets.values() if (e := c.feedback()) is not None]

    def report_startup(self) -> None:
        """Queue the whole locker once; from then on every change is journalled."""
        self._started = True
        self.supervisor.start()
        self.journal.publish(Startup(tuple(self.cabinets.values())))
        self.actions.start()
        self.health.start()
        self.journal.publish(*(StorageNotice(n) for n in self._notices))

    # --- commands ----------------------------------------------------------------

    def submit(
        self, key: int, cmd: CabinetCommand, command_id: str | None = None
    ) -> asyncio.Task[dict[str, Any]]:
        """Take a command now or refuse it now; the task runs ``command`` to its answer.

        Raises ``NotFound`` and ``Busy`` (too many commands waiting) before anything
        waits. The task outlives its caller: await it through ``asyncio.shield``.
        """
        self.get(key)
        release = self.intake.admit(key)
        task = asyncio.create_task(self.command(key, cmd, command_id), name=f"command-{key}")
        task.add_done_callback(lambda _: release())
        return task

    async def command(
        self, key: int, cmd: CabinetCommand, command_id: str | None = None
    ) -> dict[str, Any]:
        """Run a command once per id; answers the cabinet object as it was when it
        finished. Raises the domain errors of ``execute``."""

        async def act() -> dict[str, Any]:
            return (await self.execute(key, cmd)).as_cloud()

        fingerprint = f"{key}:{cmd.model_dump_json()}"
        try:
            answer = await self._commands.run(command_id, act, fingerprint)
        except LockerError as err:
            if self.on_command is not None:
                self.on_command(cmd.command, type(err).__name__)
            raise
        if self.on_command is not None:
            self.on_command(cmd.command, "ok")
        return answer

    def knows_command(self, command_id: str) -> bool:
        """Whether a command with this (namespaced) id ran or runs (see ``CommandLog``)."""
        return self._commands.knows(command_id)

    async def execute(self, key: int, cmd: CabinetCommand) -> Cabinet:
        """Carry out one command; opens of one door that pile up are carried out once.

        Raises ``NotFound``, ``Conflict``, ``Unavailable``, ``Busy``, ``Jammed``,
        ``Obstructed``.
        """
        cabinet = self.get(key)
        side: Side = "rear" if cmd.rearload else "front"
        if cmd.command != "open":
            await self._execute(cabinet, side, cmd)
            return cabinet
        # A second open of a door already being opened needs no second pulse: it
        # joins the first and shares its outcome. The first runs in its caller, so
        # commands keep their order on the cabinet's lock.
        where = (key, side)
        joined = self._opening.get(where)
        if joined is not None:
            log.info("command.joined", key=key, command=cmd.command, side=side)
            await asyncio.shield(joined)
            return cabinet
        outcome = asyncio.get_running_loop().create_future()
        outcome.add_done_callback(_retrieved)
        self._opening[where] = outcome
        try:
            await self._execute(cabinet, side, cmd)
        except LockerError as err:
            outcome.set_exception(err)
            raise
        except BaseException:  # cancelled (a stop): it may have pulsed, never twice
            outcome.set_exception(Conflict(f"the open it joined was interrupted: {INTERRUPTED}"))
            raise
        else:
            outcome.set_result(None)
        finally:
            del self._opening[where]
        return cabinet

    async def _execute(self, cabinet: Cabinet, side: Side, cmd: CabinetCommand) -> None:
        key = cabinet.key
        log.info(
            "command",
            key=key,
            command=cmd.command,
            side=side,
            delay=cmd.delay,
            acted_by=cmd.acted_by,
            order_id=cmd.order_id,
            reason=cmd.reason,
        )
        async with cabinet.lock:
            acted = self.actions.acted(key)
            try:
                await self._carry_out(cabinet, side, cmd)
            except (Unavailable, Busy) as exc:
                if self.actions.acted(key) == acted:
                    raise  # it did not act: a moment, a retry may
                # It acted, then could not go on: never a second try by a retry.
                raise Conflict(f"{exc}, after the command had acted: {INTERRUPTED}") from None

    async def _carry_out(self, cabinet: Cabinet, side: Side, cmd: CabinetCommand) -> None:
        key = cabinet.key
        if (refusal := cabinet.thermal_refusal(cmd.command)) is not None:
            raise Conflict(refusal)  # a latched safety shut-off (ADR 0011)
        if cmd.command == "open":
            if not cabinet.enabled:
                raise Conflict(f"cabinet {key} is disabled")
            await self.actions.open(cabinet, side)
        elif cmd.command == "close" and cmd.delay:
            door_of(cabinet, side)
            self.actions.close_later(cabinet, side, cmd.delay, explicit=True)
        elif cmd.command == "close":
            await self.actions.shut(cabinet, side)
        elif cmd.command in ("enable", "disable"):
            self._settle(cabinet, enabled=cmd.command == "enable")
            if not cabinet.enabled:  # a technician at work: no door moves by itself
                for each, _ in cabinet.doors():
                    self.actions.cancel_close(cabinet, each)
            self.indicators.refresh(key)
        elif cmd.command == "resize":
            self._settle(cabinet, size=cmd.size)
        elif cmd.command == "set_thermal_mode":
            if cmd.thermal_mode not in cabinet.thermal_modes:
                needs = "heater" if cmd.thermal_mode == "heat" else "cooler or compressor"
                why = f"no {needs}" if len(cabinet.thermal_modes) > 1 else "no thermal unit"
                raise Conflict(
                    f"cabinet {key} cannot {cmd.thermal_mode}: it has {why}"
                    f" (it can: {', '.join(sorted(cabinet.thermal_modes))})"
                )
            self._settle(cabinet, thermal_mode=cmd.thermal_mode)
            cabinet.thermal_set += 1  # each one re-arms the controller (a latch refuses it)

    async def open_all(
        self, side: Side = "front", reason: str | None = None
    ) -> list[tuple[int, Cabinet | LockerError]]:
        """Open every enabled cabinet's door (technicians); the hardware staggers the
        pulses. Answers (key, cabinet or the domain error) per cabinet."""
        keys = [c.key for c in self.cabinets.values() if c.enabled and c.door(side) is not None]
        cmd = CabinetCommand(command="open", rearload=side == "rear", reason=reason)
        out: list[tuple[int, Cabinet | LockerError]] = []
        tasks: dict[int, asyncio.Task[dict[str, Any]]] = {}
        for key in keys:
            try:
                tasks[key] = self.submit(key, cmd)
            except LockerError as err:  # that cabinet is busy: its own answer
                out.append((key, err))
        results = await asyncio.gather(*map(asyncio.shield, tasks.values()), return_exceptions=True)
        for key, result in zip(tasks, results, strict=True):
            if isinstance(result, LockerError):
                out.append((key, result))
            elif isinstance(result, dict):
                out.append((key, self.cabinets[key]))
            else:
                raise result  # a bug or a cancellation: not one cabinet's answer
        return sorted(out, key=lambda pair: keys.index(pair[0]))

    def _settle(self, cabinet: Cabinet, **change: Any) -> None:
        """Change a cabinet setting: on disk first, so a restart keeps it."""
        try:
            self._store.save_settings(cabinet.key, **(cabinet.settings() | change))
        except StoreError as exc:
            log.error("settings.unsaved", key=cabinet.key, error=str(exc))
            raise Unavailable(f"cannot save the setting: {exc}") from None
        for name, value in change.items():
            setattr(cabinet, name, value)

    def _schedule_check(self, entry: Any) -> None:
        """A journal observer: wake supervision when the next left-open alarm is due."""
        if self._check is not None:
            self._check.cancel()
            self._check = None
        due = self.supervisor.next_due()
        if due is not None:
            at, key = due
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # set-up code: the next entry schedules it
            delay = max(0.0, at - self._clock())
            self._check = loop.call_later(delay, self.journal.publish, Check(key))


def _retrieved(outcome: asyncio.Future[None]) -> None:
    """Every caller raises an open's error; none left over is a "never retrieved"."""
    if not outcome.cancelled():
        outcome.exception()


def _log_entry(entry: Any) -> None:
    """A journal observer: one log line per change the cloud is told of."""
    if isinstance(entry, DoorSeen):
        state = entry.door.state.value
        log.info("door.changed", key=entry.key, side=entry.side, state=state, queued=entry.report)
    elif isinstance(entry, AlarmChange):
        level = log.warning if entry.raised else log.info
        level(
            "alarm.raised" if entry.raised else "alarm.cleared",
            alarm=entry.alarm,
            key=entry.cabinet.key,
            side=entry.side,
        )
    elif isinstance(entry, BoardSeen):
        level = log.info if entry.online else log.warning
        level("board_online" if entry.online else "board_offline", bus=entry.bus, board=entry.board)
