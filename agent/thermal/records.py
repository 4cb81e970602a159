"""The temperature records (HACCP): readings and excursions per cabinet, in SQLite.

``thermal.sqlite3`` in the storage directory keeps:

- ``readings``: every ``log_every_s`` per cabinet, the wall time (UNIX seconds, UTC),
  the temperature (NULL when the sensor is not trusted), the mode and the sensor state;
- ``excursions``: each time out of temperature (past the food code's line): start,
  end (NULL while it lasts), the worst temperature and the mode; an empty cabinet's
  time past its line is a row of its own ``kind`` (``pull-down``, ``pre-heat``,
  ``empty``: no food, ADR 0021), never one of ``excursions()``, and the readings
  taken then carry the label (``note``);
- ``food_clock``: each occupied cabinet's time out of temperature and its last trusted
  temperature, so a restart does not give spoilt food a new two hours and an outage
  can be bounded by physics;
- ``latches`` and ``latch_log``: the safety shut-offs that hold, and each one latched
  and reset, with who and when (ADR 0011).

A time written while the wall clock was not known to be right says so: ``clock`` is
``unsure`` (with the monotonic time, ``mono``), ``corrected`` once rewritten from the
clock known right, ``outage`` for an excursion found at start (it begins at the last
record before the outage: the earliest it can have begun); NULL is a sure clock.

Rows older than ``retention_days`` go (HACCP records are kept one to two years: the
default is 400 days). A damaged file is set aside and replaced (``agent.storage.sqlite``);
every method raises :class:`RecordsError` when the disk refuses, and the caller logs
it and goes on controlling: a record lost never stops a heater being switched off.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog

from agent.storage.sqlite import Database, OnFile
from agent.thermal.schema import SCHEMA, migrate
from agent.thermal.times import iso

log = structlog.get_logger(__name__)

RECORDS_FILE = "thermal.sqlite3"
MAX_EXCURSIONS = 50_000  # ended excursions kept, newest first: a bound a peer cannot push
MAX_LATCH_LOG = 10_000  # rows of the latch log kept, newest


class RecordsError(Exception):
    """The records could not be read or written (disk full, I/O error)."""


class Records(OnFile):
    """The records file at ``path``; ``retention_days`` bounds what is kept."""

    def __init__(
        self,
        path: Path,
        *,
        retention_days: int = 400,
        max_excursions: int = MAX_EXCURSIONS,
        on_replaced: Callable[[str], None] | None = None,
    ) -> None:
        self._file = Database(path, SCHEMA, on_replaced)
        migrate(self._file.db)
        self.retention_s = retention_days * 86400.0
        self.max_excursions = max_excursions
        self.excursions_dropped = 0  # since start, for /metrics

    def log(
        self,
        t: float,
        rows: Iterable[tuple[Any, ...]],
        unsure_mono: float | None = None,
    ) -> None:
        """Keep one reading per cabinet: ``(key, temperature_c, mode, sensor)`` at ``t``,
        or ``(key, temperature_c, mode, sensor, note)`` (``note``: an empty cabinet's
        label, None); ``unsure_mono``: the clock is not known right, the monotonic time."""
        clock = None if unsure_mono is None else "unsure"
        data = [
            (k, t, temp, mode, sensor, clock, unsure_mono, note[0] if note else None)
            for k, temp, mode, sensor, *note in rows
        ]
        self._write(lambda: self._file.db.executemany(_INSERT_READING, data))

    def correct(self, wall: float, mono: float) -> int:
        """Rewrite this run's times written under an unsure clock; answers the rows rewritten.

        ``wall`` and ``mono``: read together now, the clock known right. Rows of an earlier
        run stay ``unsure`` (their monotonic times were another run's).
        """
        sqls = (
            "UPDATE readings SET t = :wall - (:mono - mono), mono = NULL, clock = 'corrected'"
            " WHERE mono IS NOT NULL",
            "UPDATE excursions SET start = :wall - (:mono - start_mono), start_mono = NULL,"
            " clock = CASE WHEN clock = 'unsure' THEN 'corrected' ELSE clock END"
            " WHERE start_mono IS NOT NULL",
            "UPDATE excursions SET end = :wall - (:mono - end_mono), end_mono = NULL,"
            " clock = CASE WHEN clock = 'unsure' THEN 'corrected'"
            " WHEN clock = 'outage, end unsure' THEN 'outage' ELSE clock END"
            " WHERE end_mono IS NOT NULL",
        )
        params = {"wall": wall, "mono": mono}

        def work() -> int:
            return sum(self._file.db.execute(sql, params).rowcount for sql in sqls)

        try:
            return self._file.transaction(work)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise RecordsError(f"temperature records: {exc}") from exc

    def excursion_started(
        self,
        key: int,
        t: float,
        temperature_c: float,
        mode: str,
        *,
        clock: str | None = None,
        mono: float | None = None,
        kind: str | None = None,
    ) -> None:
        """A cabinet went past its line at ``t``; the oldest ended ones beyond the bound go.

        A peer that toggles a cabinet's mode makes one excursion a toggle: the
        retention alone would let that grow for 400 days. ``clock``: ``unsure`` (with
        ``mono``, the monotonic time) or ``outage`` (it began during one), else None;
        ``kind``: None for food's, else an empty cabinet's label (not an excursion).
        """
        sql = (
            "INSERT INTO excursions (key, start, end, peak_c, mode, clock, start_mono, kind)"
            " VALUES (?, ?, NULL, ?, ?, ?, ?, ?)"
        )

        def work() -> None:
            db = self._file.db
            db.execute(sql, (key, t, temperature_c, mode, clock, mono, kind))
            [(count,)] = db.execute("SELECT count(*) FROM excursions").fetchall()
            if count <= self.max_excursions:
                return
            gone = db.execute(
                "DELETE FROM excursions WHERE end IS NOT NULL AND rowid IN (SELECT rowid"
                " FROM excursions WHERE end IS NOT NULL ORDER BY start DESC LIMIT -1 OFFSET ?)",
                (self.max_excursions,),
            ).rowcount
            if gone:
                self.excursions_dropped += gone
                log.warning("records.excursions_dropped", count=gone, kept=self.max_excursions)

        self._write(work)

    def excursion_peak(self, key: int, temperature_c: float, *, hot: bool) -> None:
        """The open excursion's worst temperature so far (highest, or lowest when
        ``hot``: hot food goes wrong downward)."""
        worse = "MIN" if hot else "MAX"
        sql = f"UPDATE excursions SET peak_c = {worse}(peak_c, ?) WHERE key = ? AND end IS NULL"
        self._write(lambda: self._file.db.execute(sql, (temperature_c, key)))

    def excursion_ended(self, key: int, t: float, unsure_mono: float | None = None) -> None:
        """The open excursion of ``key`` ended at ``t`` (``unsure_mono``: the clock is
        not known right, this is the monotonic time)."""
        clock = "clock" if unsure_mono is None else _END_UNSURE
        sql = f"UPDATE excursions SET end = ?, end_mono = ?, clock = {clock}"
        sql += " WHERE key = ? AND end IS NULL"
        self._write(lambda: self._file.db.execute(sql, (t, unsure_mono, key)))

    def excursions(self, key: int, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        """The newest ``limit`` excursions of ``key`` open or ended since ``since``, oldest first.

        ``{"start", "end", "duration_s", "peak_c", "mode", "clock"}``: times ISO 8601
        UTC; ``end`` and ``duration_s`` None while it lasts; ``clock`` None when sure.
        Food's only: an empty cabinet's time past its line is no excursion.
        """
        sql = "SELECT start, end, peak_c, mode, clock FROM excursions WHERE key = ?"
        sql += " AND kind IS NULL"
        sql += " AND (end IS NULL OR end >= ?)"  # what was out of temperature since then
        rows = self._read(sql + " ORDER BY start DESC LIMIT ?", (key, since, limit))[::-1]
        return [
            {
                "start": iso(start),
                "end": iso(end) if end is not None else None,
                # A wall clock stepped back during it: never a negative duration.
                "duration_s": round(max(0.0, end - start)) if end is not None else None,
                "peak_c": _one_decimal(peak),
                "mode": mode,
                "clock": clock,
            }
            for start, end, peak, mode, clock in rows
        ]

    def readings(self, key: int, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        """The newest ``limit`` readings of ``key`` from ``since`` (UNIX seconds), oldest
        first, as the local API answers them: ``{"t", "temperature_c", "mode"}``."""
        sql = "SELECT t, temperature_c, mode FROM readings WHERE key = ? AND t >= ?"
        rows = self._read(sql + " ORDER BY t DESC LIMIT ?", (key, since, limit))
        return [
            {"t": iso(t), "temperature_c": _one_decimal(c), "mode": m} for t, c, m in reversed(rows)
        ]

    def food_clocks(self) -> dict[int, tuple[float, float, bool, float | None]]:
        """Each cabinet's saved food clock, by key.

        ``(seconds out of temperature, when saved in UNIX seconds, whether its food was
        out of temperature then, its last trusted temperature or None)``.
        """
        rows = self._read("SELECT key, out_s, saved_at, unsafe, temperature_c FROM food_clock")
        return {key: (out_s, at, bool(unsafe), temp) for key, out_s, at, unsafe, temp in rows}

    def save_food_clocks(
        self, t: float, clocks: dict[int, tuple[float, bool, float | None]]
    ) -> None:
        """Keep each cabinet's (seconds out of temperature, out of temperature now, last
        trusted temperature) at ``t``."""
        rows = [(key, out, t, int(unsafe), temp) for key, (out, unsafe, temp) in clocks.items()]
        sql = "INSERT OR REPLACE INTO food_clock VALUES (?, ?, ?, ?, ?)"
        self._write(lambda: self._file.db.executemany(sql, rows))

    def newest(self) -> float | None:
        """The newest time kept (UNIX seconds): a reading or a food clock's save, None
        when nothing is kept."""
        [(t,)] = self._read(
            "SELECT MAX(t) FROM (SELECT MAX(t) AS t FROM readings"
            " UNION ALL SELECT MAX(saved_at) FROM food_clock)"
        )
        return t

    def latches(self) -> dict[int, list[tuple[str, str, float, bool]]]:
        """The latches that hold, by cabinet: (alarm, why, since, cut)."""
        out: dict[int, list[tuple[str, str, float, bool]]] = {}
        for key, alarm, why, since, cut in self._read(
            "SELECT key, alarm, why, since, cut FROM latches ORDER BY since"
        ):
            out.setdefault(key, []).append((alarm, why, since, bool(cut)))
        return out

    def latched(self, key: int, alarm: str, why: str, since: float, cut: bool) -> None:
        """A latch holds on ``key`` from ``since``: kept, and logged."""
        db = self._file.db

        def work() -> None:
            db.execute(
                "INSERT OR REPLACE INTO latches VALUES (?, ?, ?, ?, ?)",
                (key, alarm, why, since, int(cut)),
            )
            db.execute(
                "INSERT INTO latch_log VALUES (?, ?, 'latched', ?, ?, NULL)",
                (key, since, alarm, why),
            )

        self._write(work)

    def reset(self, key: int, t: float, by: str, cleared: Iterable[tuple[str, str]]) -> None:
        """A technician (``by``) reset ``key``'s latches at ``t``: each ``(alarm, why)``
        logged, none kept; the log is bounded to its newest ``MAX_LATCH_LOG`` rows."""
        db = self._file.db
        rows = [(key, t, alarm, why, by) for alarm, why in cleared]

        def work() -> None:
            db.execute("DELETE FROM latches WHERE key = ?", (key,))
            db.executemany("INSERT INTO latch_log VALUES (?, ?, 'reset', ?, ?, ?)", rows)
            db.execute(
                "DELETE FROM latch_log WHERE rowid IN (SELECT rowid FROM latch_log"
                " ORDER BY rowid DESC LIMIT -1 OFFSET ?)",
                (MAX_LATCH_LOG,),
            )

        self._write(work)

    def latch_log(self, key: int) -> list[dict[str, Any]]:
        """``key``'s latch log, oldest first: ``{"key", "t", "event", "alarm", "why", "by"}``."""
        sql = "SELECT key, t, event, alarm, why, by FROM latch_log WHERE key = ? ORDER BY rowid"
        names = ("key", "t", "event", "alarm", "why", "by")
        rows = self._read(sql, (key,))
        return [dict(zip(names, row, strict=True)) | {"t": iso(row[1])} for row in rows]

    def prune(self, now: float, *, newest_before: float | None = None) -> None:
        """Forget what is older than the retention.

        ``newest_before``: the newest reading of earlier runs, so a wall clock far
        ahead (no RTC, bad NTP) never deletes what a sane clock kept.
        """
        cut = now - self.retention_s
        if newest_before is not None:
            cut = min(cut, newest_before - self.retention_s)

        def work() -> None:
            self._file.db.execute("DELETE FROM readings WHERE t < ?", (cut,))
            self._file.db.execute(
                "DELETE FROM excursions WHERE end IS NOT NULL AND end < ?", (cut,)
            )

        self._write(work)

    def _write(self, work: Any) -> None:
        try:
            self._file.transaction(work)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise RecordsError(f"temperature records: {exc}") from exc

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._file.read(sql, params)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise RecordsError(f"temperature records: {exc}") from exc


_INSERT_READING = (
    "INSERT INTO readings (key, t, temperature_c, mode, sensor, clock, mono, note)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# An end written under an unsure clock: the row says so, an outage's start stays said.
_END_UNSURE = (
    "CASE WHEN clock IS NULL THEN 'unsure'"
    " WHEN clock = 'outage' THEN 'outage, end unsure' ELSE clock END"
)


def _one_decimal(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
