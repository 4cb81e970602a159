"""Opening and closing doors: pulse and confirm, retry, jam; drive and obstruction;
the auto-close timers of motorised doors.

An action reads the doors' raw ``sensed`` values (what the switch says now) and
reports what went wrong as journal entries (:class:`FaultSeen`), which
supervision turns into alarms. The auto-close timers react to what is sensed
too, not to what the disk has recorded yet: a full disk must not leave a forced
motorised door open (ADR 0012). Actions run with the cabinet's lock held (the
locker takes it), except the timers, which take it themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import structlog

from agent.config import Side
from agent.locker.cabinet import Cabinet
from agent.locker.door import Door, DoorSeen, Motion
from agent.locker.errors import Busy, Conflict, Jammed, Obstructed, Unavailable
from agent.locker.indicator import Indicators
from agent.locker.journal import Journal
from agent.locker.supervision import JAMMED, OBSTRUCTED, FaultSeen

log = structlog.get_logger(__name__)


class Actuator(Protocol):
    """What the actions need of the hardware (``agent.hardware.bridge.Hardware``)."""

    async def release(self, key: int, side: Side) -> None:
        """Pulse the lock of a latch door; raises ``Unavailable``."""
        ...

    async def drive(self, key: int, side: Side, opening: bool) -> bool:
        """Run a door's motor to its end switch; False when it did not get there in
        time (obstructed). Raises ``Unavailable``."""
        ...

    def indicate(self, key: int, pattern: str) -> None:
        """Show a pattern on the cabinet's indicator, if it has one."""
        ...

    def why_unknown(self, key: int, side: Side) -> str | None:
        """Why a door cannot be sensed when its port is not open (path, reason, what to
        do); None when the port is open (its board is then the silent one)."""
        ...


def door_of(cabinet: Cabinet, side: Side) -> Door:
    """The cabinet's door on ``side``; ``Conflict`` when it has none."""
    door = cabinet.door(side)
    if door is None:
        raise Conflict(f"cabinet {cabinet.key} has no rear door")
    return door


class Actions:
    """Carries out opens and closes on the hardware.

    Seconds: ``confirm_s`` a pulse waits for the switch, ``jam_retry_s`` before the
    one retry, ``timer_s`` the auto-close of motorised doors, ``announce_s`` the
    blue "about to open" before a motor starts.
    """

    def __init__(
        self,
        cabinets: Mapping[int, Cabinet],
        journal: Journal,
        indicators: Indicators,
        *,
        confirm_s: float,
        jam_retry_s: float,
        timer_s: float,
        announce_s: float,
    ) -> None:
        self._cabinets = cabinets
        self._journal = journal
        self._indicators = indicators
        self._confirm_s = confirm_s
        self._jam_retry_s = jam_retry_s
        self._timer_s = timer_s
        self._announce_s = announce_s
        self._actuator: Actuator | None = None
        self._tick = asyncio.Event()  # set and replaced on every raw reading
        self._closers: dict[tuple[int, Side], asyncio.Task[None]] = {}
        self._explicit: set[tuple[int, Side]] = set()  # closers a command asked for
        self._acted: dict[int, int] = {}

    def retime(
        self, *, confirm_s: float, jam_retry_s: float, timer_s: float, announce_s: float
    ) -> None:
        """New timings (a config reload); timers already running keep theirs."""
        self._confirm_s, self._jam_retry_s = confirm_s, jam_retry_s
        self._timer_s, self._announce_s = timer_s, announce_s

    def attach(self, actuator: Actuator) -> None:
        """The hardware is up: actions may run."""
        self._actuator = actuator

    async def close(self) -> None:
        """Cancel pending closes (the hardware turns its outputs off itself)."""
        tasks = list(self._closers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._closers.clear()

    def sensed(self) -> None:
        """A raw reading arrived: wake the actions waiting on a switch."""
        self._tick.set()
        self._tick = asyncio.Event()

    def start(self) -> None:
        """At start: motorised doors found open close after ``timer_s``."""
        for cabinet in self._cabinets.values():
            for side, door in cabinet.doors():
                if door.motorised and door.sensed:
                    self.close_later(cabinet, side, self._timer_s)

    def observe(self, entry: Any) -> None:
        """A journal reactor: a motorised door opened by hand closes after ``timer_s``."""
        if (
            isinstance(entry, DoorSeen)
            and entry.value
            and entry.door.motorised
            and entry.door.motion is None
        ):
            self.close_later(self._cabinets[entry.key], entry.side, self._timer_s)

    # --- opening -----------------------------------------------------------------

    async def open(self, cabinet: Cabinet, side: Side) -> None:
        """Open a door; raises ``Conflict``, ``Unavailable``, ``Jammed``, ``Obstructed``."""
        door = door_of(cabinet, side)
        if door.sensed is None:  # its board is silent, or its port not open
            if self._actuator is not None and (
                why := self._actuator.why_unknown(cabinet.key, side)
            ):
                raise Unavailable(f"cabinet {cabinet.key} {side} door: state unknown: {why}")
            where = door.answers or "its board"
            raise Unavailable(
                f"cabinet {cabinet.key} {side} door: state unknown: {where} does not answer"
                " (nothing was sent): check its power and wiring; /healthz and"
                " locker-agent status say why"
            )
        self.cancel_close(cabinet, side)
        if door.motorised:
            await self._drive_open(cabinet, side, door)
        else:
            await self._release(cabinet, side, door)

    async def _release(self, cabinet: Cabinet, side: Side, door: Door) -> None:
        """Pulse, confirm by any opening since the pulse began; one retry, then the jam alarm.

        A quick hand may shut the door before the pulse ends. A door whose switch
        already says open is pulsed once all the same and not confirmed: a broken
        feedback wire must not lock a customer out (Open-Locker #302).
        """
        actuator = self._actuator_or_unavailable()
        with self._moving(cabinet, door, "opening"):
            if door.sensed:
                await self._pulse(actuator, cabinet, side)
                return
            for attempt in (1, 2):
                before = door.opens
                await self._pulse(actuator, cabinet, side)
                with contextlib.suppress(TimeoutError):
                    await self._wait_until(lambda b=before: door.opens > b, self._confirm_s)
                    return
                if attempt == 1:
                    log.warning("door.open_retry", key=cabinet.key, side=side)
                    await asyncio.sleep(self._jam_retry_s)
        self._fault(cabinet, side, JAMMED)
        raise Jammed(f"cabinet {cabinet.key} {side} door did not open (lock jammed?)")

    async def _drive_open(self, cabinet: Cabinet, side: Side, door: Door) -> None:
        actuator = self._actuator_or_unavailable()
        if door.fully_open:
            self.close_later(cabinet, side, self._timer_s)
            return
        if self._announce_s:
            door.announcing = True
            self._indicators.refresh(cabinet.key)
            try:
                await asyncio.sleep(self._announce_s)
            finally:
                door.announcing = False
        with self._moving(cabinet, door, "opening"):
            reached = await self._drive(actuator, cabinet, side, True)
        if not reached:  # something in the way: back off once, say so
            self._fault(cabinet, side, OBSTRUCTED)
            with self._moving(cabinet, door, "closing"):
                await self._drive(actuator, cabinet, side, False)
            raise Obstructed(f"cabinet {cabinet.key} {side} door did not open fully")
        self._fault(cabinet, side, OBSTRUCTED, active=False)
        self.close_later(cabinet, side, self._timer_s)

    # --- closing -----------------------------------------------------------------

    async def shut(self, cabinet: Cabinet, side: Side) -> None:
        """Close a motorised door now; a latch door locks itself when shut (its state
        follows the switch). Raises ``Conflict``, ``Unavailable``, ``Obstructed``."""
        door = door_of(cabinet, side)
        if not door.motorised or door.sensed is False:
            return
        self.cancel_close(cabinet, side)
        if not await self._drive_closed(cabinet, side, door):
            raise Obstructed(f"cabinet {cabinet.key} {side} door: obstructed, reopened")

    async def _drive_closed(self, cabinet: Cabinet, side: Side, door: Door) -> bool:
        """Drive shut; an obstruction (a hand, a bag) stops it and opens the door again."""
        actuator = self._actuator_or_unavailable()
        with self._moving(cabinet, door, "closing"):
            reached = await self._drive(actuator, cabinet, side, False)
        if reached:
            self._fault(cabinet, side, OBSTRUCTED, active=False)
            return True
        self._fault(cabinet, side, OBSTRUCTED)
        with self._moving(cabinet, door, "opening"):
            await self._drive(actuator, cabinet, side, True)
        self.close_later(cabinet, side, self._timer_s)
        return False

    def close_later(
        self, cabinet: Cabinet, side: Side, delay_s: float, *, explicit: bool = False
    ) -> None:
        """Close a motorised door in ``delay_s``; the timer never replaces a close a
        command asked for (``explicit``), and a disabled cabinet gets none."""
        where = (cabinet.key, side)
        if not door_of(cabinet, side).motorised:
            return
        if not cabinet.enabled or (not explicit and where in self._explicit):
            return
        self.cancel_close(cabinet, side)
        if explicit:
            self._explicit.add(where)
        self._closers[where] = asyncio.create_task(
            self._close_later(cabinet, side, delay_s), name=f"close-{cabinet.key}-{side}"
        )

    def cancel_close(self, cabinet: Cabinet, side: Side) -> None:
        """Forget a pending close of that door."""
        self._explicit.discard((cabinet.key, side))
        task = self._closers.pop((cabinet.key, side), None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _close_later(self, cabinet: Cabinet, side: Side, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        async with cabinet.lock:
            if self._closers.get((cabinet.key, side)) is not asyncio.current_task():
                return  # replaced while waiting for the lock
            del self._closers[(cabinet.key, side)]
            self._explicit.discard((cabinet.key, side))
            door = door_of(cabinet, side)
            if door.sensed and cabinet.enabled:
                log.info("door.auto_close", key=cabinet.key, side=side)
                try:
                    await self._drive_closed(cabinet, side, door)
                except Unavailable as exc:
                    log.error("door.auto_close_failed", key=cabinet.key, side=side, error=str(exc))

    # --- helpers -----------------------------------------------------------------

    def acted(self, key: int) -> int:
        """How many actuations (pulses, motor runs) cabinet ``key`` has had: a command
        that fails as ``Unavailable`` after one did act (see ``Locker.execute``)."""
        return self._acted.get(key, 0)

    async def _pulse(self, actuator: Actuator, cabinet: Cabinet, side: Side) -> None:
        try:
            await actuator.release(cabinet.key, side)
        except (Unavailable, Busy):
            raise  # refused: nothing was sent (the driver's word)
        except BaseException:  # stopped (or a bug) half way: the frame may be out
            self._acted[cabinet.key] = self.acted(cabinet.key) + 1
            raise
        self._acted[cabinet.key] = self.acted(cabinet.key) + 1

    async def _drive(self, actuator: Actuator, cabinet: Cabinet, side: Side, opening: bool) -> bool:
        try:
            return await actuator.drive(cabinet.key, side, opening)
        finally:  # a run that ended in an error may have moved the door
            self._acted[cabinet.key] = self.acted(cabinet.key) + 1

    def _actuator_or_unavailable(self) -> Actuator:
        if self._actuator is None:
            raise Unavailable("hardware not started")
        return self._actuator

    def _fault(self, cabinet: Cabinet, side: Side, fault: Any, *, active: bool = True) -> None:
        self._journal.publish(FaultSeen(cabinet.key, side, fault, active))

    @contextlib.contextmanager
    def _moving(self, cabinet: Cabinet, door: Door, motion: Motion) -> Iterator[None]:
        door.motion = motion
        self._indicators.refresh(cabinet.key)
        try:
            yield
        finally:
            door.motion = None
            self._indicators.refresh(cabinet.key)

    async def _wait_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                await self._tick.wait()
