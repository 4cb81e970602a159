"""The locker: its cabinets, the sensors coming in, the commands going out.

A door change flows one way::

    hardware --door_sensed--> Door.sense --DoorSeen--> Journal --react--> Supervisor, Actions,
                                                          |              Indicators (at once)
                                                          |--append--> Outbox
                                                          |--apply--> the recorded state
                                                          '--observe--> the log, the metrics

What the agent does about a door follows what is sensed; what it tells the cloud
waits for the disk, in order (ADR 0012).

A command flows the other way: ``submit`` (admitted or ``Busy`` at once, bounded
per cabinet and in all) -> ``command`` (deduplicated by id) -> ``execute`` (opens of
one door that pile up are carried out once; one command at a time per cabinet) ->
``Actions`` -> the hardware (the lock's pulse gap); the switch it moves comes back
in through ``door_sensed`` like any other change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from agent.config import Side
from agent.locker.actions import Actions, Actuator
from agent.locker.cabinet import Cabinet
from agent.locker.dispatch import Dispatch
from agent.locker.door import DoorSeen
from agent.locker.health import Health
from agent.locker.idempotency import CommandLog
from agent.locker.indicator import Indicators, Link
from agent.locker.intake import PER_CABINET, SPARE, Intake
from agent.locker.journal import BoardSeen, Journal, Startup, StorageNotice
from agent.locker.supervision import AlarmChange, Check, Supervisor
from agent.storage.outbox import Outbox
from agent.storage.store import StateStore, StoreError

log = structlog.get_logger(__name__)


class Locker(Dispatch):
    """Every cabinet, by key: the sensors' sink and (``Dispatch``) the commands' entry.

    Seconds: ``confirm_s``, ``jam_retry_s``, ``timer_s``, ``announce_s`` (``Actions``),
    ``left_open_s`` (``Supervisor``), ``health_interval_s`` (``Health``). ``boards``:
    (bus, board) -> the cabinets it serves, for board and bus events.
    """

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
        boards: Mapping[tuple[str, int], tuple[int, ...]] | None = None,
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
        for reactor in (
            self.supervisor.observe,
            self.actions.observe,
            self.indicators.react,
            self._schedule_check,
        ):
            self.journal.react(reactor)
        for observer in (_log_entry, self.indicators.observe):
            self.journal.observe(observer)
        self.health = Health(
            self.journal, min_interval_s=health_interval_s, clock=clock, boards=boards
        )
        self._commands = CommandLog(store)
        self.intake = Intake(PER_CABINET, 2 * len(self.cabinets) + SPARE)
        self._opening = {}  # opens in progress, typed and used by Dispatch
        self._arrivals = {}
        self._unsaved = set()
        self._resave = None
        self.on_command: Callable[[str, str], None] | None = None  # (command, result)
        self._started = False
        self._stopping = False  # no new command is taken
        self._running: set[asyncio.Task[dict[str, Any]]] = set()  # submitted, unanswered
        self._notices: list[str] = []  # storage notices before start
        self._check: asyncio.TimerHandle | None = None

    def attach(self, actuator: Actuator) -> None:
        """The hardware is up: commands may act, indicators show."""
        self.actions.attach(actuator)
        self.indicators.attach(actuator.indicate)

    async def close(self) -> None:
        """Stop timers and pending closes (the hardware turns its outputs off itself)."""
        for timer in (self._check, self._resave):
            if timer is not None:
                timer.cancel()
        self.journal.close()
        self.health.close()
        await self.actions.close()

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

    def item_sensed(self, key: int, present: bool | None) -> None:
        """An item sensor: the cabinet is occupied, empty, or not known (None: its board
        is silent; the last reading is kept for thermal control, the API says null)."""
        cabinet = self.cabinets[key]
        cabinet.occupied_known = present is not None
        cabinet.occupied_sensed |= present is not None
        if present is not None and cabinet.occupied != present:
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

    def snapshot(self, keys: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """The shown door statuses of cabinets ``keys`` (all by default), feedback-shaped."""
        chosen = self.cabinets.values() if keys is None else (self.cabinets[k] for k in keys)
        return [e for c in chosen if (e := c.feedback()) is not None]

    def report_startup(self) -> None:
        """Queue the whole locker once; from then on every change is journalled."""
        self._started = True
        self.supervisor.start()
        self.journal.publish(Startup(tuple(self.cabinets.values())))
        self.actions.start()
        self.health.start()
        self.journal.publish(*(StorageNotice(n) for n in self._notices))

    def _schedule_check(self, entry: Any) -> None:
        """A journal reactor: wake supervision when the next left-open alarm is due."""
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
