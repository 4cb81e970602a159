"""The locker: every cabinet's state, the commands that change it, the events it emits.

Sensors come in through ``door_sensed`` and friends (called by the hardware
layer on the event loop); actuation goes out through an ``Actuator``. Every
change the cloud must hear of is appended to the outbox *before* it becomes
visible in the state, so anything the API or a log shows is already queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog

from agent.cabinet import Cabinet, Door, Motion, Side
from agent.commands import CabinetCommand, CommandError
from agent.errors import Unavailable
from agent.feedback import EVENT_DOOR_CHANGED, EVENT_STARTUP
from agent.idempotency import CommandLog
from agent.indicator import Link, pattern_for
from agent.outbox import Kind, Outbox, OutboxError
from agent.store import StateStore
from agent.supervision import JAMMED, OBSTRUCTED, Supervisor

log = structlog.get_logger(__name__)


HardwareUnavailable = Unavailable  # the renovation removes this alias


class Actuator(Protocol):
    async def release(self, key: int, side: Side) -> None:
        """Pulse the lock of a latch door; raises HardwareUnavailable."""
        ...

    async def drive(self, key: int, side: Side, opening: bool) -> bool:
        """Run a door's motor to its end switch; False when it did not get there in time."""
        ...

    def indicate(self, key: int, pattern: str) -> None:
        """Show a pattern on the cabinet's indicator, if it has one."""
        ...


class Locker:
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
    ) -> None:
        self.cabinets: dict[int, Cabinet] = {c.key: c for c in cabinets}
        self._outbox = outbox
        self._store = store
        for key, saved in store.settings().items():  # what commands set before a restart
            if key in self.cabinets:
                cabinet = self.cabinets[key]
                cabinet.enabled, cabinet.size = saved["enabled"], saved["size"]
                cabinet.thermal_mode = saved["thermal_mode"]
        self._confirm_s = confirm_s
        self._jam_retry_s = jam_retry_s
        self._timer_s = timer_s
        self._announce_s = announce_s
        self._actuator: Actuator | None = None
        self._started = False
        self._tick = asyncio.Event()
        self._command_log = CommandLog(store)
        self._link: Link = "ok"
        self._shown: dict[int, str] = {}
        self._closers: dict[tuple[int, Side], asyncio.Task[None]] = {}
        self._explicit: set[tuple[int, Side]] = set()  # closers a command asked for
        self._silent_at_start: set[tuple[str, int]] = set()
        self.supervisor = Supervisor(self._emit_alarm, left_open_s=left_open_s)

    def attach(self, actuator: Actuator) -> None:
        self._actuator = actuator
        for cabinet in self.cabinets.values():
            self._refresh(cabinet)

    async def close(self) -> None:
        """Stop timers and pending closes (the hardware turns its outputs off itself)."""
        self.supervisor.close()
        tasks = list(self._closers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._closers.clear()

    def get(self, key: int) -> Cabinet:
        try:
            return self.cabinets[key]
        except KeyError:
            raise CommandError(404, "NOT_FOUND", f"no cabinet with key {key}") from None

    # --- sensing ---------------------------------------------------------------

    def door_sensed(self, key: int, side: Side, is_open: bool | None) -> None:
        cabinet = self.cabinets[key]
        door = cabinet.door(side)
        if door is None or door.sensed == is_open:
            return
        if not self._started:  # the start-up snapshot will carry it
            door.sensed = is_open
            self._changed(cabinet)
            return
        seq = None
        if is_open is not None and (status := "open" if is_open else "closed") != door.reported:
            seq = self._queue(
                "change", EVENT_DOOR_CHANGED, [{"key": key, f"{side}_status": status}]
            )
            if seq is not None:
                door.reported = status
        door.sensed = is_open
        log.info("door.changed", key=key, side=side, state=door.state.value, queued=seq)
        # Supervise against the last *known* state, so a spell of "unknown" (a silent
        # board) neither hides a change nor leaves an alarm behind.
        if is_open is not None and is_open != door.known:
            first = door.known is None
            door.known = is_open
            if is_open:
                commanded = door.motion == "opening" or first
                self.supervisor.door_opened(cabinet, side, commanded=commanded)
                if door.motorised and door.motion is None:
                    self._schedule_close(cabinet, side, self._timer_s)
            else:
                self.supervisor.door_closed(cabinet, side)
        self._changed(cabinet)

    def door_fully_open(self, key: int, side: Side, is_open: bool) -> None:
        """The end switch of a motorised door."""
        cabinet = self.cabinets[key]
        door = cabinet.door(side)
        if door is not None and door.fully_open != is_open:
            door.fully_open = is_open
            self._changed(cabinet)

    def item_sensed(self, key: int, present: bool) -> None:
        cabinet = self.cabinets[key]
        if cabinet.occupied != present:
            cabinet.occupied = present
            log.info("cabinet.occupied", key=key, occupied=present)

    def board_health(self, bus: str, board: int, online: bool) -> None:
        if self._started:
            self.supervisor.board(bus, board, online)
        elif online:
            self._silent_at_start.discard((bus, board))
        else:
            self._silent_at_start.add((bus, board))

    def set_link(self, link: Link) -> None:
        """The cloud link's state, for the indicators."""
        if link != self._link:
            self._link = link
            for cabinet in self.cabinets.values():
                self._refresh(cabinet)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every known door status, in the feedback's shape."""
        return [e for c in self.cabinets.values() if (e := c.feedback()) is not None]

    def report_startup(self) -> None:
        """Queue the whole locker once; from then on every change is queued as it happens."""
        snapshot = self.snapshot()
        if snapshot and self._queue("snapshot", EVENT_STARTUP, snapshot) is not None:
            for cabinet in self.cabinets.values():
                for door in (cabinet.front, cabinet.rear):
                    if door is not None:
                        door.reported = door.status
        self._started = True
        for cabinet in self.cabinets.values():
            for side, door in (("front", cabinet.front), ("rear", cabinet.rear)):
                if door is None:
                    continue
                door.known = door.sensed
                if door.sensed:  # found open: supervised and closed like any open door
                    self.supervisor.door_opened(cabinet, side, commanded=True)
                    if door.motorised:
                        self._schedule_close(cabinet, side, self._timer_s)
        for bus, board in sorted(self._silent_at_start):
            self.supervisor.board(bus, board, online=False)

    # --- commands --------------------------------------------------------------

    async def command(
        self, key: int, cmd: CabinetCommand, command_id: str | None = None
    ) -> dict[str, Any]:
        """Run a command once per id; answers the cabinet object as it was when it finished."""

        async def act() -> dict[str, Any]:
            return (await self.execute(key, cmd)).as_cloud()

        fingerprint = f"{key}:{cmd.model_dump_json()}"
        return await self._command_log.run(command_id, act, fingerprint)

    async def execute(self, key: int, cmd: CabinetCommand) -> Cabinet:
        cabinet = self.get(key)
        side: Side = "rear" if cmd.rearload else "front"
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
            if cmd.command == "open":
                await self._open(cabinet, side)
            elif cmd.command == "close" and cmd.delay:
                if self._door(cabinet, side).motorised:
                    self._schedule_close(cabinet, side, cmd.delay, explicit=True)
            elif cmd.command == "close":
                await self._close(cabinet, side)
            elif cmd.command in ("enable", "disable"):
                self._settle(cabinet, enabled=cmd.command == "enable")
                if not cabinet.enabled:  # a technician at work: no door moves by itself
                    self._cancel_close(cabinet, "front")
                    self._cancel_close(cabinet, "rear")
                self._refresh(cabinet)
            elif cmd.command == "resize":
                assert cmd.size is not None
                self._settle(cabinet, size=cmd.size)
            elif cmd.command == "set_thermal_mode":
                assert cmd.thermal_mode is not None
                self._settle(cabinet, thermal_mode=cmd.thermal_mode)
        return cabinet

    def _settle(self, cabinet: Cabinet, **change: Any) -> None:
        """Change a cabinet setting: on disk first, so a restart keeps it."""
        settings = {
            "enabled": cabinet.enabled,
            "size": cabinet.size,
            "thermal_mode": cabinet.thermal_mode,
        } | change
        self._store.save_settings(cabinet.key, **settings)
        for name, value in change.items():
            setattr(cabinet, name, value)

    async def open_all(
        self, side: Side = "front", reason: str | None = None
    ) -> list[dict[str, Any]]:
        """Open every enabled cabinet's door (technicians); the hardware staggers the pulses."""
        keys = [c.key for c in self.cabinets.values() if c.enabled and c.door(side) is not None]
        cmd = CabinetCommand(command="open", rearload=side == "rear", reason=reason)
        results = await asyncio.gather(
            *(self.execute(key, cmd) for key in keys), return_exceptions=True
        )
        out = []
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                if not isinstance(result, CommandError):
                    log.error("open_all.failed", key=key, error=repr(result))
                    result = CommandError(500, "INTERNAL_ERROR", "internal error")
                out.append({"key": key, "ok": False, "error": result.as_json()})
            else:
                out.append({"key": key, "ok": True, "cabinet": result.as_cloud()})
        return out

    def _door(self, cabinet: Cabinet, side: Side) -> Door:
        door = cabinet.door(side)
        if door is None:
            raise CommandError(409, "CONFLICT", f"cabinet {cabinet.key} has no rear door")
        return door

    def _actuator_or_503(self) -> Actuator:
        if self._actuator is None:
            raise CommandError(503, "UNAVAILABLE", "hardware not started")
        return self._actuator

    async def _open(self, cabinet: Cabinet, side: Side) -> None:
        door = self._door(cabinet, side)
        if not cabinet.enabled:
            raise CommandError(409, "CONFLICT", f"cabinet {cabinet.key} is disabled")
        if door.sensed is None:
            raise CommandError(
                503, "UNAVAILABLE", f"cabinet {cabinet.key} {side} door: state unknown"
            )
        self._cancel_close(cabinet, side)
        try:
            if door.motorised:
                await self._drive_open(cabinet, side, door)
            elif not door.sensed:  # an open latch door needs no pulse
                await self._release(cabinet, side, door)
        except HardwareUnavailable as exc:
            raise CommandError(503, "UNAVAILABLE", str(exc)) from None

    async def _release(self, cabinet: Cabinet, side: Side, door: Door) -> None:
        """Pulse, confirm by the switch; one retry after a pause, then the jam alarm."""
        actuator = self._actuator_or_503()
        with self._moving(cabinet, door, "opening"):
            for attempt in (1, 2):
                await actuator.release(cabinet.key, side)
                with contextlib.suppress(TimeoutError):
                    await self._wait_until(lambda: door.sensed is True, self._confirm_s)
                    return
                if attempt == 1:
                    log.warning("door.open_retry", key=cabinet.key, side=side)
                    await asyncio.sleep(self._jam_retry_s)
        self.supervisor.raise_(cabinet, JAMMED, side)
        raise CommandError(
            504, "LOCK_JAMMED", f"cabinet {cabinet.key} {side} door did not open (lock jammed?)"
        )

    async def _drive_open(self, cabinet: Cabinet, side: Side, door: Door) -> None:
        actuator = self._actuator_or_503()
        if door.fully_open:
            self._schedule_close(cabinet, side, self._timer_s)
            return
        if self._announce_s:
            door.announcing = True
            self._refresh(cabinet)
            try:
                await asyncio.sleep(self._announce_s)
            finally:
                door.announcing = False
        with self._moving(cabinet, door, "opening"):
            reached = await actuator.drive(cabinet.key, side, True)
        if not reached:
            # Something in the way: back off once, say so.
            self.supervisor.raise_(cabinet, OBSTRUCTED, side)
            with self._moving(cabinet, door, "closing"):
                await actuator.drive(cabinet.key, side, False)
            raise CommandError(
                504, "DOOR_OBSTRUCTED", f"cabinet {cabinet.key} {side} door did not open fully"
            )
        self.supervisor.clear(cabinet, OBSTRUCTED, side)
        self._schedule_close(cabinet, side, self._timer_s)

    async def _close(self, cabinet: Cabinet, side: Side) -> None:
        door = self._door(cabinet, side)
        if not door.motorised or door.sensed is False:
            return  # a latch door locks itself when shut: the state follows the switch
        self._cancel_close(cabinet, side)
        try:
            closed = await self._drive_closed(cabinet, side, door)
        except HardwareUnavailable as exc:
            raise CommandError(503, "UNAVAILABLE", str(exc)) from None
        if not closed:
            raise CommandError(
                504, "DOOR_OBSTRUCTED", f"cabinet {cabinet.key} {side} door: obstructed, reopened"
            )

    async def _drive_closed(self, cabinet: Cabinet, side: Side, door: Door) -> bool:
        """Drive shut; an obstruction (a hand, a bag) stops it and opens the door again."""
        actuator = self._actuator_or_503()
        with self._moving(cabinet, door, "closing"):
            reached = await actuator.drive(cabinet.key, side, False)
        if reached:
            self.supervisor.clear(cabinet, OBSTRUCTED, side)
            return True
        self.supervisor.raise_(cabinet, OBSTRUCTED, side)
        with self._moving(cabinet, door, "opening"):
            await actuator.drive(cabinet.key, side, True)
        self._schedule_close(cabinet, side, self._timer_s)
        return False

    # --- delayed and automatic closing ----------------------------------------

    def _schedule_close(
        self, cabinet: Cabinet, side: Side, delay: float, *, explicit: bool = False
    ) -> None:
        """Close in ``delay`` s; the timer never replaces a close a command asked for."""
        where = (cabinet.key, side)
        if not cabinet.enabled or (not explicit and where in self._explicit):
            return
        self._cancel_close(cabinet, side)
        if explicit:
            self._explicit.add(where)
        self._closers[where] = asyncio.create_task(
            self._close_later(cabinet, side, delay), name=f"close-{cabinet.key}-{side}"
        )

    def _cancel_close(self, cabinet: Cabinet, side: Side) -> None:
        self._explicit.discard((cabinet.key, side))
        task = self._closers.pop((cabinet.key, side), None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _close_later(self, cabinet: Cabinet, side: Side, delay: float) -> None:
        await asyncio.sleep(delay)
        async with cabinet.lock:
            if self._closers.get((cabinet.key, side)) is not asyncio.current_task():
                return  # replaced while waiting for the lock
            del self._closers[(cabinet.key, side)]
            self._explicit.discard((cabinet.key, side))
            door = self._door(cabinet, side)
            if door.sensed and cabinet.enabled:
                log.info("door.auto_close", key=cabinet.key, side=side)
                try:
                    await self._drive_closed(cabinet, side, door)
                except HardwareUnavailable as exc:
                    log.error("door.auto_close_failed", key=cabinet.key, side=side, error=str(exc))

    # --- state helpers ---------------------------------------------------------

    @contextlib.contextmanager
    def _moving(self, cabinet: Cabinet, door: Door, motion: Motion) -> Any:
        door.motion = motion
        self._changed(cabinet)
        try:
            yield
        finally:
            door.motion = None
            self._changed(cabinet)

    def _changed(self, cabinet: Cabinet) -> None:
        self._refresh(cabinet)
        self._tick.set()
        self._tick = asyncio.Event()

    def _refresh(self, cabinet: Cabinet) -> None:
        pattern = pattern_for(cabinet, self._link)
        if self._actuator is not None and self._shown.get(cabinet.key) != pattern:
            self._shown[cabinet.key] = pattern
            self._actuator.indicate(cabinet.key, pattern)

    def _emit_alarm(self, event: str, cabinets: list[dict[str, Any]]) -> None:
        # The cloud requires a non-empty cabinets list: an event with no door of its
        # own (a silent board) carries what is known of the rest of the locker.
        cabinets = cabinets or self.snapshot()
        if not cabinets:
            log.warning("event.not_sent", event_type=event, reason="no door state known")
            return
        self._queue("alarm", event, cabinets)

    def _queue(self, kind: Kind, event: str, cabinets: list[dict[str, Any]]) -> int | None:
        """Append to the outbox; None when the disk refused (logged and in /healthz)."""
        try:
            return self._outbox.append(kind, event, cabinets).seq
        except OutboxError:
            return None

    async def _wait_until(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                await self._tick.wait()
