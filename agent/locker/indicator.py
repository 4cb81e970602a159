"""What each cabinet's RGB indicator shows, with the meanings SYNQ lockers use.

Patterns (the GPIO driver renders them): ``ready`` multi-colour cycling,
``about_to_open`` blue, ``open`` green (open or opening), ``closing`` flashing
yellow then red, ``cloud_unreachable`` flashing red, ``no_internet`` dull red,
``disabled`` for a disabled cabinet, ``food_unsafe`` steady red once its food
spent too long out of temperature (it outranks everything: nobody should take it),
``code_refused`` flashing red for a moment after a pickup code was refused.
A door in motion outranks the link state:
the customer in front of the door needs to know what the door does, so a door
shows what its switch says (``Door.seen``), recorded yet or not (ADR 0012).

:class:`Indicators` reacts to the journal's door entries as they are published,
observes its alarm entries once recorded, and follows the actions. It never calls the
hardware from inside a call that came from the hardware: a refresh is marked and
shown on the next turn of the loop, once per cabinet however many changes came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Literal

from agent.locker.cabinet import Cabinet
from agent.locker.door import DoorSeen, DoorState
from agent.locker.supervision import FOOD_TIME_EXCEEDED, AlarmChange

Link = Literal["ok", "cloud_unreachable", "no_internet"]
Show = Callable[[int, str], None]


def pattern_for(
    cabinet: Cabinet, link: Link, flash: str | None = None, *, unsafe: bool = False
) -> str:
    """The pattern a cabinet's indicator should show now (``flash``: one shown a moment,
    except over unsafe food and a door moving or open: a refused code must not paint
    another customer's open door red, nor hide a motorised door's warning; ``unsafe``:
    food found past its time, recorded yet or not)."""
    if unsafe or any(alarm == FOOD_TIME_EXCEEDED for alarm, _ in cabinet.alarms):
        return "food_unsafe"
    door = cabinet.front
    state = door.seen
    moving = door.announcing or state in (DoorState.OPENING, DoorState.OPEN, DoorState.CLOSING)
    if flash is not None and not moving:
        return flash
    if not cabinet.enabled:
        return "disabled"
    if door.announcing:
        return "about_to_open"
    if state in (DoorState.OPENING, DoorState.OPEN):
        return "open"
    if state == DoorState.CLOSING:
        return "closing"
    if link != "ok":
        return link
    return "ready"


class Indicators:
    """Keeps every cabinet's indicator in step with its state and the cloud link."""

    def __init__(self, cabinets: Mapping[int, Cabinet]) -> None:
        self._cabinets = cabinets
        self._show: Show | None = None
        self._link: Link = "ok"
        self._shown: dict[int, str] = {}
        self._dirty: set[int] = set()
        self._pending: asyncio.Handle | None = None
        self._flashes: dict[int, tuple[str, asyncio.TimerHandle]] = {}
        self._unsafe: set[int] = set()  # food past its time, as found (before the record)

    def attach(self, show: Show) -> None:
        """Start showing, through ``show(key, pattern)``; every cabinet is refreshed."""
        self._show = show
        for key in self._cabinets:
            self.refresh(key)

    def react(self, entry: Any) -> None:
        """A journal reactor: a door sensed differently, or food found unsafe (or safe
        again), may show another pattern, whether the disk has recorded it yet or not:
        the light is what tells a customer not to take the food."""
        if isinstance(entry, DoorSeen):
            self.refresh(entry.key)
        elif isinstance(entry, AlarmChange) and entry.alarm == FOOD_TIME_EXCEEDED:
            key = entry.cabinet.key
            (self._unsafe.add if entry.raised else self._unsafe.discard)(key)
            self.refresh(key)

    def observe(self, entry: Any) -> None:
        """A journal observer: a recorded alarm (food unsafe) may show another pattern."""
        if isinstance(entry, AlarmChange):
            self.refresh(entry.cabinet.key)

    def set_link(self, link: Link) -> None:
        """The cloud link's state changed: every cabinet may show it."""
        if link != self._link:
            self._link = link
            for key in self._cabinets:
                self.refresh(key)

    def flash(self, key: int, pattern: str, seconds: float) -> None:
        """Show ``pattern`` on cabinet ``key`` for ``seconds``, then its own again."""
        if key not in self._cabinets:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        old = self._flashes.pop(key, None)
        if old is not None:
            old[1].cancel()
        self._flashes[key] = (pattern, loop.call_later(seconds, self._unflash, key))
        self.refresh(key)

    def _unflash(self, key: int) -> None:
        self._flashes.pop(key, None)
        self.refresh(key)

    def refresh(self, key: int) -> None:
        """Show cabinet ``key``'s pattern again, on the next turn of the loop."""
        if self._show is None:
            return
        self._dirty.add(key)
        if self._pending is None:
            try:
                self._pending = asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # no loop (set-up code): show now
                self._flush()

    def _flush(self) -> None:
        self._pending = None
        dirty, self._dirty = self._dirty, set()
        for key in sorted(dirty):
            flash = self._flashes.get(key)
            pattern = pattern_for(
                self._cabinets[key],
                self._link,
                flash[0] if flash else None,
                unsafe=key in self._unsafe,
            )
            if self._show is not None and self._shown.get(key) != pattern:
                self._shown[key] = pattern
                self._show(key, pattern)
