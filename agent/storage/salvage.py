"""Salvage: every row of a damaged SQLite file that can still be read.

A damaged page makes SQLite refuse any query that walks through it, so one bad
page of an outbox would cost every queued change behind it. The rows around it
are still on their pages: a table is read in rowid order from the front and from
the back, each until the first error, and what lies between is cut in halves
until every range that reads is read. What stays unreadable is counted by its
rowids (an upper bound where rowids have gaps, as deleted rows leave).

The damaged copy is opened as a database (its WAL, moved aside with it, is read
too) and only read from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Row = tuple[Any, ...]  # (rowid, *columns)
QUERY_BUDGET = 20_000  # range reads a table may cost; what is left is counted lost


@dataclass(slots=True)
class Salvaged:
    """What could be read of a damaged file: ``rows`` by table, in rowid order."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)  # after rowid, by table
    lost: int = 0  # rows that could not be read (at most this many)
    unreadable: bool = False  # not even the schema could be read: nothing is known

    @property
    def recovered(self) -> int:
        """How many rows were read."""
        return sum(len(rows) for rows in self.rows.values())


def salvage(path: Path, tables: dict[str, list[str]]) -> Salvaged:
    """The readable rows of ``tables`` (name -> columns) in the damaged file at ``path``."""
    out = Salvaged()
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error:
        return Salvaged(unreadable=True)
    try:
        for table, columns in tables.items():
            try:
                reader = _Reader(db, table, _present(db, table, columns))
                rows, lost = reader.read()
            except (sqlite3.Error, UnicodeDecodeError) as exc:  # the schema itself is gone
                log.warning("storage.salvage_table_unreadable", table=table, error=str(exc))
                out.unreadable = True
                continue
            out.rows[table] = rows
            out.columns[table] = reader.columns
            out.lost += lost
    finally:
        db.close()
    return out


def columns_of(db: sqlite3.Connection) -> dict[str, list[str]]:
    """Every table of ``db`` (a sound one) and its columns, as salvage wants them."""
    names = [
        name
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {name: [row[1] for row in db.execute(f'PRAGMA table_info("{name}")')] for name in names}


def _present(db: sqlite3.Connection, table: str, columns: list[str]) -> list[str]:
    """Those of ``columns`` the damaged table has (a file from an older version may
    lack one); all of them when its schema cannot tell."""
    try:
        have = {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}
    except (sqlite3.Error, UnicodeDecodeError):
        return columns
    return [c for c in columns if c in have] if have else columns


class _Reader:
    """One table of a damaged file, read around its bad pages."""

    def __init__(self, db: sqlite3.Connection, table: str, columns: Iterable[str]) -> None:
        self._db = db
        self.columns = list(columns)
        self._select = f'SELECT rowid, {", ".join(columns)} FROM "{table}"'
        self._budget = QUERY_BUDGET

    def read(self) -> tuple[list[Row], int]:
        """(rows in rowid order, rows lost). Raises sqlite3.Error (or UnicodeDecodeError)
        when nothing can be read at all (the table cannot even be named)."""
        front = list(self._until_error(self._select + " ORDER BY rowid"))
        if not front:
            self._db.execute(self._select + " LIMIT 0").fetchall()  # the table exists?
        back = list(self._until_error(self._select + " ORDER BY rowid DESC"))
        if not back or (front and back[-1][0] <= front[-1][0]):
            return self._merge(front, back), 0  # read through: nothing was in the way
        low = front[-1][0] + 1 if front else 1
        high = back[-1][0] - 1
        middle, lost = self._between(low, high)
        return self._merge(front + middle, back), lost

    def _until_error(self, sql: str) -> Iterator[Row]:
        try:
            yield from self._db.execute(sql)
        except (sqlite3.Error, UnicodeDecodeError):
            return

    def _between(self, low: int, high: int) -> tuple[list[Row], int]:
        """Rows with ``low <= rowid <= high``, halving the range around what fails."""
        if low > high:
            return [], 0
        self._budget -= 1
        if self._budget < 0:  # a bad interior page over millions of rowids: stop halving
            return [], high - low + 1
        try:
            rows = self._db.execute(
                self._select + " WHERE rowid BETWEEN ? AND ? ORDER BY rowid", (low, high)
            ).fetchall()
        except (sqlite3.Error, UnicodeDecodeError):
            if low == high:
                return [], 1
            mid = (low + high) // 2
            left, lost_left = self._between(low, mid)
            right, lost_right = self._between(mid + 1, high)
            return left + right, lost_left + lost_right
        return rows, 0

    @staticmethod
    def _merge(front: list[Row], back: list[Row]) -> list[Row]:
        seen: dict[Any, Row] = {row[0]: row for row in front}
        for row in back:
            seen.setdefault(row[0], row)
        return [seen[rowid] for rowid in sorted(seen)]
