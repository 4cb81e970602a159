"""Door supervision: alarms raised by what the doors do, cleared when the cause goes.

Pure: no asyncio, no I/O. The supervisor reacts to the journal's entries as they
are published, that is to what is sensed, in the order the cloud will hear it,
whether or not the disk has taken the record yet (ADR 0012), and answers with
:class:`AlarmChange` entries, which the journal queues right behind. It never
calls anyone. Names (after Matter's DoorLock alarms):

- ``door_forced_open``: a door opens with no command opening it; cleared when shut.
- ``door_left_open``: a door stays open past ``left_open_s``; cleared when shut.
- ``lock_jammed``: an open was pulsed, retried once, and the door never opened;
  cleared when the door opens.
- ``door_obstructed``: a motorised door missed its end switch in time (or the beam
  saw something); cleared when it next reaches its end switch.
- ``rear_opened_while_front_open``: the rear door opens while the front is open;
  cleared when either is shut.

A clearing is the event ``<name>_cleared``. Alarms are level-triggered inside:
the supervisor keeps per-door facts, derives the alarms that should be active and
compares them with the ones it put in the journal (raised and not cleared since);
the journal keeps their order, so a ``_cleared`` is never sent for an alarm the
cloud did not hear first. ``Cabinet.alarms`` is the recorded view (moves when the
journal applies an entry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.config import Side
from agent.locker.cabinet import Cabinet
from agent.locker.door import DoorSeen

FORCED = "door_forced_open"
LEFT_OPEN = "door_left_open"
JAMMED = "lock_jammed"
OBSTRUCTED = "door_obstructed"
REAR_WHILE_FRONT = "rear_opened_while_front_open"
# Raised by thermal control (``agent.thermal.alarms``); named here for the indicator.
FOOD_TIME_EXCEEDED = "food_time_exceeded"

Fault = Literal["lock_jammed", "door_obstructed"]

DOOR_ALARMS = frozenset({FORCED, LEFT_OPEN, JAMMED, OBSTRUCTED, REAR_WHILE_FRONT})
"""The alarms this module raises and clears; others (thermal) are not its to touch."""


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """A journal entry: ``alarm`` on ``cabinet``'s ``side`` door is raised or cleared
    (``side`` None: an alarm of the whole cabinet, such as a thermal one)."""

    cabinet: Cabinet
    alarm: str
    side: Side | None
    raised: bool

    @property
    def event(self) -> str:
        """The feedback's ``event.type``: the alarm, or ``<alarm>_cleared``."""
        return self.alarm if self.raised else f"{self.alarm}_cleared"

    def apply(self) -> None:
        """Show the alarm as active (or not); called once the event is queued."""
        if self.raised:
            self.cabinet.alarms.add((self.alarm, self.side))
        else:
            self.cabinet.alarms.discard((self.alarm, self.side))


@dataclass(frozen=True, slots=True)
class FaultSeen:
    """A journal entry from an action: a fault began (``active``) or ended."""

    key: int
    side: Side
    fault: Fault
    active: bool

    def apply(self) -> None:
        """Nothing to show by itself; the supervisor turns it into alarms."""


@dataclass(frozen=True, slots=True)
class Check:
    """A journal entry: look at ``key``'s alarms again (a timer came due)."""

    key: int

    def apply(self) -> None:
        """Nothing to show by itself; the supervisor turns it into alarms."""


@dataclass(slots=True)
class _Facts:
    """What supervision knows of one door."""

    seen: bool = False  # a known state since start: the first one is not "forced"
    open_since: float | None = None  # clock() when it was last seen opening
    forced: bool = False
    faults: set[str] = field(default_factory=set)
    rear_while_front: bool = False


class Supervisor:
    """Derives each cabinet's alarms from the entries published to the journal.

    ``left_open_s``: seconds; ``clock``: monotonic seconds (never the wall clock:
    a Pi steps it at the first NTP sync).
    """

    def __init__(
        self,
        cabinets: Mapping[int, Cabinet],
        *,
        left_open_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._cabinets = cabinets
        self.left_open_s = left_open_s
        self._clock = clock
        self._facts: dict[tuple[int, Side], _Facts] = {
            (key, side): _Facts() for key, c in cabinets.items() for side, _ in c.doors()
        }
        # Door alarms put in the journal, raised and not cleared since, per cabinet.
        self._raised: dict[int, set[tuple[str, Side]]] = {key: set() for key in cabinets}

    def start(self) -> None:
        """The start-up snapshot is published: doors found open are supervised from now
        as if a command had opened them (nobody can tell who did)."""
        now = self._clock()
        for key, cabinet in self._cabinets.items():
            self._raised[key] = {
                (alarm, side)
                for alarm, side in cabinet.alarms
                if alarm in DOOR_ALARMS and side is not None
            }
            for side, door in cabinet.doors():
                facts = self._facts[(key, side)]
                facts.seen = door.sensed is not None
                facts.open_since = now if door.sensed else None

    def observe(self, entry: Any) -> list[AlarmChange]:
        """A journal reactor: the alarm changes a published entry calls for, in order."""
        if isinstance(entry, DoorSeen):
            if entry.value is None:
                return []  # supervise the last known state across a silent spell
            self._door(entry)
            return self._check(entry.key)
        if isinstance(entry, FaultSeen):
            faults = self._facts[(entry.key, entry.side)].faults
            (faults.add if entry.active else faults.discard)(entry.fault)
            return self._check(entry.key)
        if isinstance(entry, Check):
            return self._check(entry.key)
        return []

    def next_due(self) -> tuple[float, int] | None:
        """(clock time, cabinet key) of the next left-open alarm to come due."""
        due = [
            (facts.open_since + self.left_open_s, key)
            for (key, side), facts in self._facts.items()
            if facts.open_since is not None and (LEFT_OPEN, side) not in self._raised[key]
        ]
        return min(due) if due else None

    def _door(self, entry: DoorSeen) -> None:
        facts = self._facts[(entry.key, entry.side)]
        if entry.value and facts.open_since is None:
            facts.forced = facts.seen and not entry.commanded
            facts.open_since = self._clock()
            facts.faults.discard(JAMMED)
            front = self._cabinets[entry.key].front
            if entry.side == "rear" and front.sensed:
                facts.rear_while_front = True
        elif not entry.value and facts.open_since is not None:
            facts.open_since = None
            facts.forced = False
            rear = self._facts.get((entry.key, "rear"))
            if rear is not None:  # cleared when either door is shut
                rear.rear_while_front = False
        facts.seen = True

    def _wanted(self, key: int) -> set[tuple[str, Side]]:
        now = self._clock()
        wanted: set[tuple[str, Side]] = set()
        for side, _ in self._cabinets[key].doors():
            facts = self._facts[(key, side)]
            wanted.update((fault, side) for fault in facts.faults)
            if facts.forced:
                wanted.add((FORCED, side))
            if facts.open_since is not None and now - facts.open_since >= self.left_open_s:
                wanted.add((LEFT_OPEN, side))
            if facts.rear_while_front:
                wanted.add((REAR_WHILE_FRONT, side))
        return wanted

    def _check(self, key: int) -> list[AlarmChange]:
        cabinet = self._cabinets[key]
        wanted = self._wanted(key)
        raised = self._raised[key]
        changes = _changes(cabinet, sorted(wanted - raised), raised=True) + _changes(
            cabinet, sorted(raised - wanted), raised=False
        )
        self._raised[key] = wanted
        return changes


def _changes(
    cabinet: Cabinet, alarms: Iterable[tuple[str, Side]], *, raised: bool
) -> list[AlarmChange]:
    return [AlarmChange(cabinet, alarm, side, raised) for alarm, side in alarms]
