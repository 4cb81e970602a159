"""Door supervision: alarms raised by what the doors do, cleared when the cause goes.

Every alarm and every clearing is an event in the feedback's ``event.type`` and
a log line. Names (after Matter's DoorLock alarms):

- ``door_forced_open``: a door opens with no command opening it; cleared when shut.
- ``door_left_open``: a door stays open past ``[locker] left_open_s``; cleared when shut.
- ``lock_jammed``: an open was commanded, retried once, and the switch never moved;
  cleared when the door opens.
- ``door_obstructed``: a motorised door missed its end switch in time (or the beam saw
  something); cleared when it next reaches its end switch.
- ``rear_opened_while_front_open``: the rear door opens while the front is open;
  cleared when either is shut.
- ``board_offline`` / ``board_online``: a lock board stops answering / answers again.

A clearing is the event ``<name>_cleared``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from agent.cabinet import Cabinet, Side

log = structlog.get_logger(__name__)

Emit = Callable[[str, list[dict[str, Any]]], None]

FORCED = "door_forced_open"
LEFT_OPEN = "door_left_open"
JAMMED = "lock_jammed"
OBSTRUCTED = "door_obstructed"
REAR_WHILE_FRONT = "rear_opened_while_front_open"


class Supervisor:
    def __init__(self, emit: Emit, *, left_open_s: float) -> None:
        self._emit = emit
        self._left_open_s = left_open_s
        self._timers: dict[tuple[int, str], asyncio.TimerHandle] = {}

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def door_opened(self, cabinet: Cabinet, side: Side, commanded: bool) -> None:
        if not commanded:
            self.raise_(cabinet, FORCED, side)
        self.clear(cabinet, JAMMED, side)
        self._timers[(cabinet.key, side)] = asyncio.get_running_loop().call_later(
            self._left_open_s, self.raise_, cabinet, LEFT_OPEN, side
        )
        if side == "rear" and cabinet.front.sensed:
            self.raise_(cabinet, REAR_WHILE_FRONT, "rear")

    def door_closed(self, cabinet: Cabinet, side: Side) -> None:
        timer = self._timers.pop((cabinet.key, side), None)
        if timer is not None:
            timer.cancel()
        self.clear(cabinet, FORCED, side)
        self.clear(cabinet, LEFT_OPEN, side)
        self.clear(cabinet, REAR_WHILE_FRONT, "rear")

    def board(self, bus: str, board: int, online: bool) -> None:
        name = "board_online" if online else "board_offline"
        (log.info if online else log.warning)(name, bus=bus, board=board)
        self._emit(name, [])

    def raise_(self, cabinet: Cabinet, alarm: str, side: Side) -> None:
        if (alarm, side) in cabinet.alarms:
            return
        self._emit(alarm, _entries(cabinet))  # queued before it is shown
        cabinet.alarms.add((alarm, side))
        log.warning("alarm.raised", alarm=alarm, key=cabinet.key, side=side)

    def clear(self, cabinet: Cabinet, alarm: str, side: Side) -> None:
        if (alarm, side) not in cabinet.alarms:
            return
        self._emit(f"{alarm}_cleared", _entries(cabinet))
        cabinet.alarms.discard((alarm, side))
        log.info("alarm.cleared", alarm=alarm, key=cabinet.key, side=side)


def _entries(cabinet: Cabinet) -> list[dict[str, Any]]:
    entry = cabinet.feedback()
    return [entry] if entry else []
