"""A cabinet and its doors: what the switches say, what a command is doing, what was reported."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

Side = Literal["front", "rear"]
ThermalMode = Literal["ambient", "heat", "freeze", "chill"]
Motion = Literal["opening", "closing"]


class DoorState(StrEnum):
    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    UNKNOWN = "unknown"  # the board does not answer: never a guess


@dataclass(slots=True)
class Door:
    """One door.

    ``sensed`` is the closed switch (True open, False closed, None unknown);
    ``fully_open`` the end switch of a motorised door; ``motion`` what a command
    is doing to it; ``reported`` what the cloud was last told.
    """

    motorised: bool = False
    sensed: bool | None = None
    fully_open: bool | None = None
    motion: Motion | None = None
    announcing: bool = False  # the blue "about to open" before a motor starts
    reported: Literal["open", "closed"] | None = None
    known: bool | None = None  # the last sensed value that was not unknown

    @property
    def state(self) -> DoorState:
        if self.sensed is None:
            return DoorState.UNKNOWN
        if self.motion == "opening":
            done = self.fully_open if self.motorised else self.sensed
            return DoorState.OPEN if done else DoorState.OPENING
        if self.motion == "closing":
            return DoorState.CLOSING if self.sensed else DoorState.CLOSED
        return DoorState.OPEN if self.sensed else DoorState.CLOSED

    @property
    def status(self) -> Literal["open", "closed"] | None:
        """What the switch says, in the feedback's words; None while unknown."""
        if self.sensed is None:
            return None
        return "open" if self.sensed else "closed"


@dataclass(slots=True)
class Cabinet:
    key: int
    size: str
    front: Door = field(default_factory=Door)
    rear: Door | None = None
    enabled: bool = True
    occupied: bool = False
    thermal_mode: ThermalMode = "ambient"
    alarms: set[tuple[str, str]] = field(default_factory=set)  # (alarm, side)
    # Two commands on one cabinet never interleave.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def door(self, side: Side) -> Door | None:
        return self.front if side == "front" else self.rear

    def as_cloud(self) -> dict[str, Any]:
        """The cloud's cabinet object (GET /api/lockers/locations shape), plus ``unknown``
        door states and the active ``alarms``."""
        return {
            "key": self.key,
            "state": self.front.state.value,
            "enabled": self.enabled,
            "size": self.size,
            "occupied": int(self.occupied),
            "thermal_mode": self.thermal_mode,
            "rear_load_status": self.rear.state.value if self.rear else None,
            "alarms": [{"type": a, "side": s} for a, s in sorted(self.alarms)],
        }

    def feedback(self) -> dict[str, Any] | None:
        """This cabinet's entry in a feedback body: the known door statuses, or None."""
        entry: dict[str, Any] = {"key": self.key}
        if self.front.status:
            entry["front_status"] = self.front.status
        if self.rear and self.rear.status:
            entry["rear_status"] = self.rear.status
        return entry if len(entry) > 1 else None
