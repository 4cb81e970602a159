"""The journal: the one way a change is recorded and told. Reactions first, then the
outbox, then the state the record shows.

Everything the agent learns or decides that could change what the cloud is told
(a door sensed, an alarm raised, a board gone silent, the start-up snapshot)
is an *entry*. ``publish`` hands each entry at once to the *reactors* (supervision,
the auto-close timers, the indicators: what the agent does follows what is sensed,
ADR 0012), whose follow-up entries go right behind it, then puts them all in one
ordered backlog. Draining it takes the oldest entry, appends its feedback message
to the outbox (committed), then ``apply()``s it to the recorded state, then hands
it to the *observers* (the log, the metrics: what was recorded). So:

- a full disk never stops the agent acting on a door: a forced door is still
  driven shut, its alarm still decided; only the record waits;
- "recorded before told" holds by construction: when the disk refuses a write, the
  entry stays in the backlog, nothing after it is applied, and a retry every
  ``retry_s`` drains it once the disk is back, in order: the cloud then hears every
  change, late but whole, and never a ``_cleared`` before its alarm.

The backlog is bounded (``max_backlog``): past it, the oldest entry is applied
unqueued, counted and logged as lost, so a dead disk cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog

from agent.locker.cabinet import Cabinet
from agent.locker.door import DoorSeen
from agent.locker.supervision import AlarmChange
from agent.storage.message import Kind
from agent.storage.outbox import Outbox, OutboxError

log = structlog.get_logger(__name__)

# event.type values of the journal's own messages; the spec leaves the vocabulary open.
EVENT_STARTUP = "startup"
EVENT_DOOR_CHANGED = "door_changed"
EVENT_STORAGE_REPLACED = "storage_replaced"  # a damaged store was set aside: a new snapshot

Feedback = list[dict[str, Any]]


class Entry(Protocol):
    """Anything the journal orders: ``apply()`` makes it part of the record."""

    def apply(self) -> None:
        """Make the entry part of the recorded state (once its message is committed)."""
        ...


Observer = Callable[[Any], Iterable[Entry] | None]
Told = tuple[Kind, str, Feedback, dict[str, Any] | None]


@runtime_checkable
class Reported(Entry, Protocol):
    """An entry of another room that says itself what the cloud hears of it (a code
    that opened a door): ``told(snapshot)`` gives (kind, event.type, cabinets, detail)."""

    def told(self, snapshot: Callable[..., Feedback]) -> Told:
        """What the cloud hears: (outbox kind, event.type, cabinets, detail)."""
        ...


@dataclass(frozen=True, slots=True)
class BoardSeen:
    """A journal entry: lock board ``board`` on ``bus`` went silent or answers again;
    ``keys``: the cabinets it serves (empty: not known, the whole locker is sent)."""

    bus: str
    board: int
    online: bool
    keys: tuple[int, ...] = ()

    def apply(self) -> None:
        """Health is read from the buses; the entry only tells the cloud."""


@dataclass(frozen=True, slots=True)
class BusSeen:
    """A journal entry: every board of ``bus`` went silent (or its port closed), or
    the bus answers again; ``boards`` and ``keys``: its boards and their cabinets."""

    bus: str
    online: bool
    boards: tuple[int, ...] = ()
    keys: tuple[int, ...] = ()

    def apply(self) -> None:
        """Health is read from the buses; the entry only tells the cloud."""


@dataclass(frozen=True, slots=True)
class StorageNotice:
    """A journal entry: a damaged store was set aside and replaced. The cloud hears
    ``storage_replaced`` with the whole locker, a new snapshot to start again from."""

    notice: str

    def apply(self) -> None:
        """Nothing to show: /healthz lists the notice itself."""


@dataclass(frozen=True, slots=True)
class Startup:
    """A journal entry: the whole locker as found at start (``startup``)."""

    cabinets: tuple[Cabinet, ...]

    def apply(self) -> None:
        """From now on the cloud knows every door it was shown."""
        for cabinet in self.cabinets:
            for _, door in cabinet.doors():
                door.reported = door.status


class Journal:
    """Hands entries to the reactors, orders them, queues their feedback, applies them,
    tells the observers.

    ``snapshot(keys=None)`` gives the door statuses of those cabinets (all by
    default; an empty list when no door is known), for events that have no door of
    their own. ``retry_s``: seconds between tries while the outbox refuses;
    ``max_backlog``: entries kept waiting at most.
    """

    def __init__(
        self,
        outbox: Outbox,
        snapshot: Callable[..., Feedback],
        *,
        retry_s: float = 1.0,
        max_backlog: int = 10_000,
    ) -> None:
        self._outbox = outbox
        self._snapshot = snapshot
        self._retry_s = retry_s
        self._max_backlog = max_backlog
        self._backlog: deque[Entry] = deque()
        self._reactors: list[Observer] = []
        self._observers: list[Observer] = []
        self._incoming: deque[Entry] = deque()  # published, not yet reacted to
        self._reacting = False
        self._draining = False
        self._retry: asyncio.TimerHandle | None = None
        self.lost = 0  # entries applied without being queued (backlog overflow)

    def react(self, reactor: Observer) -> None:
        """Call ``reactor(entry)`` as each entry is published, before it is recorded (the
        disk may refuse it for a while); the entries it returns are published next."""
        self._reactors.append(reactor)

    def observe(self, observer: Observer) -> None:
        """Call ``observer(entry)`` after each entry is recorded and applied; it may
        return entries."""
        self._observers.append(observer)

    def publish(self, *entries: Entry) -> None:
        """React to ``entries`` now; queue, apply and observe them now, or as soon as
        the outbox takes them."""
        self._incoming.extend(entries)
        if self._reacting:  # a reactor published: the loop below takes it
            return
        self._reacting = True
        try:
            while self._incoming:
                entry = self._incoming.popleft()
                self._backlog.append(entry)
                follow: list[Entry] = []
                for reactor in self._reactors:
                    follow.extend(reactor(entry) or ())
                self._incoming.extendleft(reversed(follow))
        finally:
            self._reacting = False
        while len(self._backlog) > self._max_backlog:
            lost = self._backlog.popleft()
            self.lost += 1
            log.error("journal.lost", entry=type(lost).__name__, waiting=len(self._backlog))
            self._apply(lost)
        self._drain()

    @property
    def waiting(self) -> int:
        """Entries not yet queued because the outbox refused them."""
        return len(self._backlog)

    def problems(self) -> list[str]:
        """Health lines for /healthz; empty when all is queued."""
        out = []
        if self._backlog:
            out.append(f"{len(self._backlog)} changes waiting for the outbox to take them")
            doors = {(e.key, e.side): e.door for e in self._backlog if isinstance(e, DoorSeen)}
            out.extend(
                f"cabinet {key} {side} door: shown {door.seen.value} as sensed, not yet recorded"
                for (key, side), door in sorted(doors.items())
                if not door.recorded
            )
            alarms = {  # the last decision per alarm: bounded however long the disk refuses
                (e.cabinet.key, e.alarm, e.side or ""): e
                for e in self._backlog
                if isinstance(e, AlarmChange)
            }
            out.extend(
                f"cabinet {e.cabinet.key}: {e.event}"
                + (f" ({e.side} door)" if e.side else "")
                + ", not yet recorded"
                for _, e in sorted(alarms.items(), key=lambda item: item[0])
            )
        if self.lost:
            out.append(f"{self.lost} changes lost: the outbox refused them too long")
        return out

    def close(self) -> None:
        """Stop retrying (what waits is lost with the process, as on a power cut)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _drain(self) -> None:
        if self._draining:  # an observer published: the loop below takes it
            return
        self._draining = True
        try:
            while self._backlog:
                entry = self._backlog[0]
                message = self._message(entry)
                if message is not None:
                    try:
                        self._outbox.append(*message)
                    except OutboxError:  # logged there, and in /healthz
                        self._retry_later()
                        return
                self._backlog.popleft()
                self._backlog.extendleft(reversed(self._apply(entry)))
        finally:
            self._draining = False

    def _apply(self, entry: Entry) -> list[Entry]:
        entry.apply()
        follow: list[Entry] = []
        for observer in self._observers:
            follow.extend(observer(entry) or ())
        return follow

    def _retry_later(self) -> None:
        if self._retry is not None:
            return
        with contextlib.suppress(RuntimeError):  # no loop: the next publish retries
            self._retry = asyncio.get_running_loop().call_later(self._retry_s, self._retried)

    def _retried(self) -> None:
        self._retry = None
        self._drain()

    def _message(self, entry: Entry) -> tuple[Kind, str, Feedback, dict[str, Any] | None] | None:
        """What the cloud hears of an entry: (outbox kind, event.type, cabinets, detail)."""
        kind: Kind
        detail: dict[str, Any] | None = None
        if isinstance(entry, DoorSeen):
            if entry.report is None:
                return None
            return (
                "change",
                EVENT_DOOR_CHANGED,
                [{"key": entry.key, f"{entry.side}_status": entry.report}],
                None,
            )
        if isinstance(entry, AlarmChange):
            # Its own cabinet; with no door of it known (the cloud refuses an entry with
            # no status) the event names it by key and carries what is known of the
            # locker: a cloud that refuses an empty list still takes the alarm.
            own = entry.cabinet.feedback()
            kind, event = "alarm", entry.event
            cabinets = [own] if own else self._snapshot()
            detail = None if own else {"key": entry.cabinet.key}
        elif isinstance(entry, BoardSeen):
            event = "board_online" if entry.online else "board_offline"
            kind, cabinets = "alarm", self._snapshot(entry.keys or None)
            detail = {"bus": entry.bus, "board": entry.board}
        elif isinstance(entry, BusSeen):
            event = "bus_online" if entry.online else "bus_offline"
            kind, cabinets = "alarm", self._snapshot(entry.keys or None)
            detail = {"bus": entry.bus, "boards": list(entry.boards)}
        elif isinstance(entry, Startup):
            kind, event, cabinets = "snapshot", EVENT_STARTUP, self._snapshot()
        elif isinstance(entry, StorageNotice):
            kind, event, cabinets = "snapshot", EVENT_STORAGE_REPLACED, self._snapshot()
        elif isinstance(entry, Reported):
            kind, event, cabinets, detail = entry.told(self._snapshot)
        else:
            return None
        # With no door known (a bus that never opened) the list is empty and the
        # event is sent all the same: never dropped for lack of a door (ADR 0019).
        return kind, event, cabinets, detail
