"""The locker: every cabinet's state, the commands that change it, the events it emits.

Sensors come in through ``door_sensed``/``item_sensed`` (called by the hardware
layer on the event loop); actuation goes out through an ``Actuator``. Every
change the cloud must hear of is appended to the outbox *before* it becomes
visible in the state, so anything the API or a log shows is already queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog

from agent.cabinet import Cabinet, Door, Side
from agent.commands import CabinetCommand, CommandError
from agent.feedback import EVENT_DOOR_CHANGED, EVENT_STARTUP
from agent.idempotency import CommandLog
from agent.outbox import Outbox

log = structlog.get_logger(__name__)


class HardwareUnavailable(Exception):
    """The actuator cannot reach the hardware right now (port closed, board silent)."""


class Actuator(Protocol):
    async def release(self, key: int, side: Side) -> None:
        """Pulse the lock of one door; raises HardwareUnavailable."""
        ...


class Locker:
    def __init__(
        self,
        cabinets: Iterable[Cabinet],
        outbox: Outbox,
        *,
        confirm_timeout: float = 2.0,
    ) -> None:
        self.cabinets: dict[int, Cabinet] = {c.key: c for c in cabinets}
        self._outbox = outbox
        self._confirm_timeout = confirm_timeout
        self._actuator: Actuator | None = None
        self._started = False
        self._tick = asyncio.Event()
        self._command_log = CommandLog()

    def attach(self, actuator: Actuator) -> None:
        self._actuator = actuator

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
        status = None if is_open is None else ("open" if is_open else "closed")
        seq = None
        if self._started and status is not None and status != door.reported:
            seq = self._outbox.append(
                "change", EVENT_DOOR_CHANGED, [{"key": key, f"{side}_status": status}]
            ).seq
            door.reported = status
        door.sensed = is_open
        log.info("door.changed", key=key, side=side, state=door.state.value, queued=seq)
        self._notify()

    def item_sensed(self, key: int, present: bool) -> None:
        cabinet = self.cabinets[key]
        if cabinet.occupied != present:
            cabinet.occupied = present
            log.info("cabinet.occupied", key=key, occupied=present)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every known door status, in the feedback's shape."""
        return [e for c in self.cabinets.values() if (e := c.feedback()) is not None]

    def report_startup(self) -> None:
        """Queue the whole locker once; from then on every change is queued as it happens."""
        entries = self.snapshot()
        self._outbox.append("snapshot", EVENT_STARTUP, entries)
        for cabinet in self.cabinets.values():
            for door in (cabinet.front, cabinet.rear):
                if door is not None:
                    door.reported = door.status
        self._started = True

    # --- commands --------------------------------------------------------------

    async def command(
        self, key: int, cmd: CabinetCommand, command_id: str | None = None
    ) -> dict[str, Any]:
        """Run a command once per id; answers the cabinet object as it was when it finished."""

        async def act() -> dict[str, Any]:
            return (await self.execute(key, cmd)).as_cloud()

        return await self._command_log.run(command_id, act)

    async def execute(self, key: int, cmd: CabinetCommand) -> Cabinet:
        cabinet = self.get(key)
        side: Side = "rear" if cmd.rearload else "front"
        log.info(
            "command",
            key=key,
            command=cmd.command,
            side=side,
            acted_by=cmd.acted_by,
            order_id=cmd.order_id,
            reason=cmd.reason,
        )
        async with cabinet.lock:
            if cmd.command == "open":
                await self._open(cabinet, side)
            elif cmd.command == "close":
                # A latch lock locks itself when the door is shut: the state follows the switch.
                self._door(cabinet, side)
            elif cmd.command in ("enable", "disable"):
                cabinet.enabled = cmd.command == "enable"
            elif cmd.command == "resize":
                assert cmd.size is not None
                cabinet.size = cmd.size
            elif cmd.command == "set_thermal_mode":
                assert cmd.thermal_mode is not None
                cabinet.thermal_mode = cmd.thermal_mode
        return cabinet

    def _door(self, cabinet: Cabinet, side: Side) -> Door:
        door = cabinet.door(side)
        if door is None:
            raise CommandError(409, "CONFLICT", f"cabinet {cabinet.key} has no rear door")
        return door

    async def _open(self, cabinet: Cabinet, side: Side) -> None:
        door = self._door(cabinet, side)
        if not cabinet.enabled:
            raise CommandError(409, "CONFLICT", f"cabinet {cabinet.key} is disabled")
        if door.sensed is None:
            raise CommandError(
                503, "UNAVAILABLE", f"cabinet {cabinet.key} {side} door: state unknown"
            )
        if door.sensed:
            return  # already open: no pulse
        if self._actuator is None:
            raise CommandError(503, "UNAVAILABLE", "hardware not started")
        door.motion = "opening"
        try:
            await self._actuator.release(cabinet.key, side)
            await self._wait_until(lambda: door.sensed is True, self._confirm_timeout)
        except HardwareUnavailable as exc:
            raise CommandError(503, "UNAVAILABLE", str(exc)) from None
        except TimeoutError:
            log.error("door.did_not_open", key=cabinet.key, side=side)
            raise CommandError(
                504, "DOOR_DID_NOT_OPEN", f"cabinet {cabinet.key} {side} door did not open"
            ) from None
        finally:
            door.motion = None

    # --- waiting on sensors ----------------------------------------------------

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def _wait_until(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                await self._tick.wait()
