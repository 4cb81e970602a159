"""One door as a pure state machine: sensed values in, journal entries out.

No asyncio and no I/O. A door keeps three views of itself:

- ``sensed``: what the switch said last (True open, False closed, None unknown);
  raw, updated at once; what the agent acts on: the actions, the auto-close
  timers, supervision and the indicator (ADR 0012);
- ``shown``: the record; it moves only when the journal applies a
  :class:`DoorSeen` entry, that is after the change was committed to the outbox;
- ``reported``: what the cloud was last told (committed), and ``proposed``: the
  last status put in the journal, so each real change is proposed exactly once.

A person reading the API is shown what the switch says now (``seen``), and
whether that is recorded yet (``recorded``: False while the disk refuses the
change). A board that stops answering makes the door ``unknown``: shown as such,
never reported to the cloud as open or closed (Open-Locker: no guesses).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from agent.config import Side

DoorStatus = Literal["open", "closed"]
Motion = Literal["opening", "closing"]


class DoorState(StrEnum):
    """The cloud's cabinet ``state`` words, plus ``unknown``."""

    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    UNKNOWN = "unknown"  # the board does not answer: never a guess


def status_of(value: bool | None) -> DoorStatus | None:
    """A sensed value in the feedback's words; None for unknown."""
    if value is None:
        return None
    return "open" if value else "closed"


@dataclass(frozen=True, slots=True)
class DoorSeen:
    """A journal entry: ``door`` was sensed ``value``.

    ``report`` is the status the cloud must hear (a ``door_changed``), or None when
    the change is not news to it (unknown, or back to what it was told).
    ``commanded``: a command was opening the door when it was sensed.
    """

    key: int
    side: Side
    door: Door
    value: bool | None
    report: DoorStatus | None
    commanded: bool

    def apply(self) -> None:
        """Make the change visible; the journal calls this once the entry is queued."""
        self.door.shown = self.value
        if self.report is not None:
            self.door.reported = self.report


@dataclass(slots=True, eq=False)
class Door:
    """One door of a cabinet; ``motorised`` doors have a motor and an end switch;
    ``wired``: what senses and opens it, for people (``bus rs485 board 1 channel 6``);
    ``answers``: what must answer for its state to be known (``bus rs485 board 1``)."""

    motorised: bool = False
    wired: str = ""
    answers: str = ""
    sensed: bool | None = None
    shown: bool | None = None
    reported: DoorStatus | None = None
    proposed: DoorStatus | None = None
    fully_open: bool | None = None  # the end switch of a motorised door
    motion: Motion | None = None  # what a command is doing to the door
    announcing: bool = False  # the blue "about to open" before a motor starts
    opens: int = 0  # openings sensed so far: an action confirms by "any since I began"

    def sense(self, key: int, side: Side, value: bool | None) -> DoorSeen | None:
        """Record a reading; the entry to journal, or None when nothing changed."""
        if value == self.sensed:
            return None
        if value:
            self.opens += 1
        self.sensed = value
        status = status_of(value)
        report = None
        if status is not None and status != self.proposed:
            report = self.proposed = status
        return DoorSeen(key, side, self, value, report, commanded=self.motion == "opening")

    def settle(self) -> None:
        """Before the start-up snapshot: show what is sensed, unjournalled (the
        snapshot carries it)."""
        self.shown = self.sensed
        self.proposed = status_of(self.sensed)

    @property
    def status(self) -> DoorStatus | None:
        """What is shown, in the feedback's words; None while unknown."""
        return status_of(self.shown)

    @property
    def state(self) -> DoorState:
        """The recorded state with what a command is doing folded in."""
        return self._state(self.shown)

    @property
    def seen(self) -> DoorState:
        """What the switch says now, with what a command is doing folded in: for people."""
        return self._state(self.sensed)

    @property
    def recorded(self) -> bool:
        """Whether what the switch says is recorded (in the outbox), or still waits."""
        return self.sensed == self.shown

    def _state(self, value: bool | None) -> DoorState:
        if value is None:
            return DoorState.UNKNOWN
        if self.motion == "opening":
            done = self.fully_open if self.motorised else value
            return DoorState.OPEN if done else DoorState.OPENING
        if self.motion == "closing":
            return DoorState.CLOSING if value else DoorState.CLOSED
        return DoorState.OPEN if value else DoorState.CLOSED
