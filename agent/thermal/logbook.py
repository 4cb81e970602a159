"""Keeping the records as the rounds go: a reading per cabinet every ``log_every_s``,
each excursion past the food code's line (start, worst temperature, end), the food
clocks, and the retention. An empty cabinet's time past its line (a pull-down or
pre-heat: ``unit.Unit.coming_up``) is kept as a row of its own kind, never as an
excursion, and its readings carry the label; an item put in while it is still past
its line ends that row and starts the excursion then. A record the disk refuses is
logged and the control goes on: a lost row never keeps a heater on.

While the wall clock is not known right, what is written says so (``unsure``, with
the monotonic time) and is rewritten once it is (``correct``); an excursion found at
the first reading after an outage begins at the last record before it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import structlog

from agent.thermal.bands import Lines
from agent.thermal.records import Records, RecordsError

log = structlog.get_logger(__name__)

PRUNE_EVERY_S = 86400.0


class Logbook:
    """Writes ``records`` from the units (``unit.Unit``) each round; ``wall``: UNIX
    seconds for the rows."""

    def __init__(self, records: Records, *, log_every_s: float, wall: Callable[[], float]) -> None:
        self.records = records
        self.log_every_s = log_every_s
        self._wall = wall
        self._logged_at: float | None = None
        self._pruned_at: float | None = None
        self.failing: str | None = None  # why the last write failed, until one works
        self._newest_before: float | None = None
        with self.saying():  # the newest row of earlier runs: the prune's guard
            self._newest_before = records.newest()

    @property
    def last_record(self) -> float | None:
        """The newest time kept before this run (UNIX seconds), None when none is."""
        return self._newest_before

    def start(self, units: Mapping[int, Any]) -> None:
        """Close the excursions a stop left open at the last record (after it nothing is
        known: what the first reading finds starts anew)."""
        end = self._newest_before if self._newest_before is not None else self._wall()
        with self.saying():
            for key in units:
                self.records.excursion_ended(key, end)

    def keep(self, now: float, units: Iterable[Any], lines: Lines, unsure: bool = False) -> None:
        """One round's records; ``now``: monotonic seconds (for the intervals and, when
        the wall clock is ``unsure``, in the rows for their correction)."""
        units = list(units)
        wall = self._wall()
        mono = now if unsure else None
        with self.saying():
            for unit in units:
                self._excursion(unit, wall, lines, mono)
            if self._logged_at is None or now - self._logged_at >= self.log_every_s:
                self._logged_at = now
                rows = [
                    (u.cabinet.key, u.verdict.temperature_c, u.mode, u.verdict.status, u.coming_up)
                    for u in units
                ]
                self.records.log(wall, rows, mono)
                self.failing = None  # the disk takes writes again
                self.save_clocks(units)
                for u in units:
                    if u.excursion:
                        self.records.excursion_peak(u.cabinet.key, u.peak_c, hot=u.mode == "heat")
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S:
                self._pruned_at = now
                # A clock far ahead at boot deletes nothing: the cut never passes the
                # newest record of earlier runs, less the retention.
                self.records.prune(wall, newest_before=self._newest_before)

    def correct(self, wall: float, mono: float) -> None:
        """The wall clock is known right now: rewrite what this run wrote unsure."""
        with self.saying():
            count = self.records.correct(wall, mono)
            log.info("thermal.records_corrected", rows=count)

    def _excursion(self, unit: Any, wall: float, lines: Lines, mono: float | None) -> None:
        temp = unit.verdict.temperature_c
        if temp is None:
            return  # unknown: the excursion (if any) goes on until a trusted reading
        key = unit.cabinet.key
        out = not lines.safe(unit.mode, temp)
        kind = unit.coming_up if out else None  # None: food's excursion
        hot = unit.mode == "heat"  # hot food goes wrong downward
        began, unit.outage_start = unit.outage_start, None
        if unit.excursion and (not out or kind != unit.excursion_kind):
            # Back in line, or filled or emptied while past it: this row ends here.
            self.records.excursion_peak(key, unit.peak_c, hot=hot)
            self.records.excursion_ended(key, wall, mono)
            event = (
                "thermal.excursion_ended" if unit.excursion_kind is None else "thermal.empty_ended"
            )
            log.info(event, key=key, temperature_c=temp, peak_c=unit.peak_c,
                     kind=unit.excursion_kind)  # fmt: skip
            unit.excursion = False
        if out and not unit.excursion:
            if began is not None:  # found past the line after an outage: began in it
                self.records.excursion_started(
                    key, began, temp, unit.mode, clock="outage", kind=kind
                )
            else:
                clock = None if mono is None else "unsure"
                self.records.excursion_started(
                    key, wall, temp, unit.mode, clock=clock, mono=mono, kind=kind
                )
            unit.peak_c = temp
            unit.excursion, unit.excursion_kind = True, kind
            if kind is None:
                log.warning("thermal.excursion_started", key=key, temperature_c=temp,
                            mode=unit.mode)  # fmt: skip
            else:  # no food: said, not warned
                log.info("thermal.empty_started", key=key, temperature_c=temp, mode=unit.mode,
                         kind=kind)  # fmt: skip
        elif out:
            # The worst so far, in memory: written at each log and at the end (an SD
            # card is not written every round of a long excursion).
            unit.peak_c = min(unit.peak_c, temp) if hot else max(unit.peak_c, temp)

    def close(self, units: Iterable[Any]) -> None:
        """A clean stop: the food clocks and the open excursions' worst so far kept."""
        units = list(units)
        self.save_clocks(units)
        with self.saying():
            for u in units:
                if u.excursion:
                    self.records.excursion_peak(u.cabinet.key, u.peak_c, hot=u.mode == "heat")

    def saved_clocks(self) -> dict[int, tuple[float, float, bool, float | None]]:
        """The food clocks kept before a restart (see ``Records.food_clocks``); none
        when unreadable, said loudly."""
        try:
            return self.records.food_clocks()
        except RecordsError as exc:
            log.error("thermal.food_clocks_unread", error=str(exc))
            return {}

    def save_clocks(self, units: Iterable[Any]) -> None:
        """Keep every unit's food clock."""
        clocks = {
            u.cabinet.key: (u.food.out_s, u.food.unsafe, u.verdict.temperature_c) for u in units
        }
        with self.saying():
            self.records.save_food_clocks(self._wall(), clocks)

    @contextlib.contextmanager
    def saying(self) -> Iterator[None]:
        """A write the disk refuses is logged and shown (``failing``), never raised."""
        try:
            yield
        except RecordsError as exc:
            if self.failing is None:
                log.error("thermal.records_unsaved", error=str(exc))
            self.failing = f"temperature records not kept: {exc}"
