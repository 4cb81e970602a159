"""The temperature records (HACCP): readings and excursions per cabinet, in SQLite.

``thermal.sqlite3`` in the storage directory keeps:

- ``readings``: every ``log_every_s`` per cabinet, the wall time (UNIX seconds, UTC),
  the temperature (NULL when the sensor is not trusted), the mode and the sensor state;
- ``excursions``: each time out of temperature (past the food code's line): start,
  end (NULL while it lasts), the worst temperature and the mode;
- ``food_clock``: each occupied cabinet's time out of temperature, so a restart does
  not give spoilt food a new two hours.

Rows older than ``retention_days`` go (HACCP records are kept one to two years: the
default is 400 days). A damaged file is set aside and replaced (``agent.storage.sqlite``);
every method raises :class:`RecordsError` when the disk refuses, and the caller logs
it and goes on controlling: a record lost never stops a heater being switched off.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from agent.storage.sqlite import Database

log = structlog.get_logger(__name__)

RECORDS_FILE = "thermal.sqlite3"
MAX_EXCURSIONS = 50_000  # ended excursions kept, newest first: a bound a peer cannot push

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    key           INTEGER NOT NULL,
    t             REAL NOT NULL,
    temperature_c REAL,
    mode          TEXT NOT NULL,
    sensor        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_key_t ON readings (key, t);
CREATE TABLE IF NOT EXISTS excursions (
    key       INTEGER NOT NULL,
    start     REAL NOT NULL,
    end       REAL,
    peak_c    REAL,
    mode      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS excursions_key_start ON excursions (key, start);
CREATE TABLE IF NOT EXISTS food_clock (
    key      INTEGER PRIMARY KEY,
    out_s    REAL NOT NULL,
    saved_at REAL NOT NULL,
    unsafe   INTEGER NOT NULL
);
"""

CSV_FIELDS = ("key", "t", "temperature_c", "mode", "sensor")


class RecordsError(Exception):
    """The records could not be read or written (disk full, I/O error)."""


def iso(t: float) -> str:
    """UNIX seconds as ISO 8601 UTC with a ``Z``, to the second."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(text: str) -> float:
    """An ISO 8601 time (``2026-11-29T10:00:00Z``; no zone means UTC) as UNIX seconds.
    Raises ``ValueError`` naming the expected form."""
    hint = "since: an ISO 8601 time such as 2026-11-29T10:00:00Z"
    if " " in text.strip():  # a "+01:00" sent unencoded in a URL arrives as a space
        hint += " (in a URL, write + as %2B, or use Z)"
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(hint) from None


class Records:
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
        self.retention_s = retention_days * 86400.0
        self.max_excursions = max_excursions
        self.excursions_dropped = 0  # since start, for /metrics

    @property
    def salvaged(self) -> tuple[int, int]:
        """Rows read back from damaged copies since start, and rows that could not be."""
        return self._file.recovered, self._file.lost

    @property
    def notice(self) -> str | None:
        """What went wrong with the file since start (damaged, or kept in memory)."""
        return self._file.notice

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def log(self, t: float, rows: Iterable[tuple[int, float | None, str, str]]) -> None:
        """Keep one reading per cabinet: ``(key, temperature_c, mode, sensor)`` at ``t``."""
        data = [(key, t, temp, mode, sensor) for key, temp, mode, sensor in rows]
        self._write(lambda: self._file.db.executemany(_INSERT_READING, data))

    def excursion_started(self, key: int, t: float, temperature_c: float, mode: str) -> None:
        """A cabinet went past its line at ``t``; the oldest ended ones beyond the bound go.

        A peer that toggles a cabinet's mode makes one excursion a toggle: the
        retention alone would let that grow for 400 days.
        """
        sql = "INSERT INTO excursions VALUES (?, ?, NULL, ?, ?)"

        def work() -> None:
            db = self._file.db
            db.execute(sql, (key, t, temperature_c, mode))
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

    def excursion_ended(self, key: int, t: float) -> None:
        """The open excursion of ``key`` ended at ``t``."""
        sql = "UPDATE excursions SET end = ? WHERE key = ? AND end IS NULL"
        self._write(lambda: self._file.db.execute(sql, (t, key)))

    def excursions(self, key: int, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        """The newest ``limit`` excursions of ``key`` open or ended since ``since``, oldest first.

        ``{"start", "end", "duration_s", "peak_c", "mode"}``: times ISO 8601 UTC;
        ``end`` and ``duration_s`` None while it lasts.
        """
        sql = "SELECT start, end, peak_c, mode FROM excursions WHERE key = ?"
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
            }
            for start, end, peak, mode in rows
        ]

    def readings(self, key: int, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        """The newest ``limit`` readings of ``key`` from ``since`` (UNIX seconds), oldest
        first, as the local API answers them: ``{"t", "temperature_c", "mode"}``."""
        sql = "SELECT t, temperature_c, mode FROM readings WHERE key = ? AND t >= ?"
        rows = self._read(sql + " ORDER BY t DESC LIMIT ?", (key, since, limit))
        return [
            {"t": iso(t), "temperature_c": _one_decimal(c), "mode": m} for t, c, m in reversed(rows)
        ]

    def food_clocks(self) -> dict[int, tuple[float, float, bool]]:
        """Each cabinet's saved food clock: (seconds out of temperature, when saved in
        UNIX seconds, whether its food was out of temperature then)."""
        rows = self._read("SELECT key, out_s, saved_at, unsafe FROM food_clock")
        return {key: (out_s, at, bool(unsafe)) for key, out_s, at, unsafe in rows}

    def save_food_clocks(self, t: float, clocks: dict[int, tuple[float, bool]]) -> None:
        """Keep each cabinet's (seconds out of temperature, out of temperature now) at ``t``."""
        rows = [(key, out_s, t, int(unsafe)) for key, (out_s, unsafe) in clocks.items()]
        sql = "INSERT OR REPLACE INTO food_clock VALUES (?, ?, ?, ?)"
        self._write(lambda: self._file.db.executemany(sql, rows))

    def newest(self) -> float | None:
        """The time of the newest reading kept (UNIX seconds), None when none is."""
        [(t,)] = self._read("SELECT MAX(t) FROM readings")
        return t

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


_INSERT_READING = "INSERT INTO readings VALUES (?, ?, ?, ?, ?)"


def _one_decimal(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


_EXPORTS = {
    "readings": (
        CSV_FIELDS,
        "SELECT key, t, temperature_c, mode, sensor FROM readings WHERE t >= ?",
        "key, t",
    ),
    "excursions": (
        ("key", "start", "end", "duration_s", "peak_c", "mode"),
        "SELECT key, start, end, end - start, peak_c, mode FROM excursions WHERE start >= ?",
        "key, start",
    ),
}


def export_csv(
    path: Path, key: int | None = None, since: float = 0.0, table: str = "readings"
) -> Iterator[str]:
    """The ``readings`` or ``excursions`` of the file at ``path``, as CSV lines, streamed.

    ``readings``: ``key,t,temperature_c,mode,sensor``; ``excursions``:
    ``key,start,end,duration_s,peak_c,mode``; times ISO 8601 UTC. Read-only (the
    running agent may hold the file). Raises ``RecordsError`` before the first line
    when the file cannot be read.
    """
    if not path.is_file():
        raise RecordsError(f"{path}: no temperature records here (is this the storage dir?)")
    fields, sql, order = _EXPORTS[table]
    params: tuple[Any, ...] = (since,)
    if key is not None:
        sql, params = sql + " AND key = ?", (since, key)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            rows = db.execute(f"{sql} ORDER BY {order}", params)
        except sqlite3.Error as exc:
            raise RecordsError(f"{path}: {exc}") from exc
        yield ",".join(fields) + "\n"
        try:
            for row in rows:
                yield _csv_line(table, row)
        except sqlite3.Error as exc:
            raise RecordsError(f"{path}: {exc}") from exc
    finally:
        db.close()


def _csv_line(table: str, row: tuple[Any, ...]) -> str:
    out = io.StringIO()
    if table == "readings":
        k, t, temp, mode, sensor = row
        cells: tuple[Any, ...] = (k, iso(t), _two(temp), mode, sensor)
    else:
        k, start, end, duration, peak, mode = row
        end_text = "" if end is None else iso(end)
        length = "" if duration is None else round(max(0.0, duration))
        cells = (k, iso(start), end_text, length, _two(peak), mode)
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def _two(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
