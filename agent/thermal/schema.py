"""The records file's layout (``thermal.sqlite3``, kept by ``records.py``): its tables,
and what a file written by an older agent is brought up to at open.

Tables (their meaning: ``records.py``): ``readings`` and ``excursions`` (wall times in
UNIX seconds, UTC; ``clock`` NULL when sure, else ``unsure`` / ``corrected`` /
``outage``, with the monotonic seconds of this run in ``mono``, ``start_mono``,
``end_mono``), ``food_clock`` (one row per cabinet: seconds out of temperature, when
saved, whether unsafe then, the last trusted temperature in C), ``latches`` (one row
per cabinet and alarm that holds) and ``latch_log`` (each latched and reset, by whom).
``excursions.kind`` is NULL for food's time past its line, else an empty cabinet's
(``pull-down``, ``pre-heat``, ``empty``: ADR 0021), and ``readings.note`` the same
label on a reading taken then.
Columns are only ever added, never renamed or dropped, so an older file opens.
"""

from __future__ import annotations

import sqlite3

import structlog

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    key           INTEGER NOT NULL,
    t             REAL NOT NULL,
    temperature_c REAL,
    mode          TEXT NOT NULL,
    sensor        TEXT NOT NULL,
    clock         TEXT,
    mono          REAL,
    note          TEXT
);
CREATE INDEX IF NOT EXISTS readings_key_t ON readings (key, t);
CREATE TABLE IF NOT EXISTS excursions (
    key        INTEGER NOT NULL,
    start      REAL NOT NULL,
    end        REAL,
    peak_c     REAL,
    mode       TEXT NOT NULL,
    clock      TEXT,
    start_mono REAL,
    end_mono   REAL,
    kind       TEXT
);
CREATE INDEX IF NOT EXISTS excursions_key_start ON excursions (key, start);
CREATE TABLE IF NOT EXISTS food_clock (
    key           INTEGER PRIMARY KEY,
    out_s         REAL NOT NULL,
    saved_at      REAL NOT NULL,
    unsafe        INTEGER NOT NULL,
    temperature_c REAL
);
CREATE TABLE IF NOT EXISTS latches (
    key   INTEGER NOT NULL,
    alarm TEXT NOT NULL,
    why   TEXT NOT NULL,
    since REAL NOT NULL,
    cut   INTEGER NOT NULL,
    PRIMARY KEY (key, alarm)
);
CREATE TABLE IF NOT EXISTS latch_log (
    key    INTEGER NOT NULL,
    t      REAL NOT NULL,
    event  TEXT NOT NULL,
    alarm  TEXT NOT NULL,
    why    TEXT NOT NULL,
    by     TEXT
);
"""

# Columns added since the first files were written: added to an older file at open.
_ADDED = {
    "readings": (("clock", "TEXT"), ("mono", "REAL"), ("note", "TEXT")),
    "excursions": (
        ("clock", "TEXT"),
        ("start_mono", "REAL"),
        ("end_mono", "REAL"),
        ("kind", "TEXT"),
    ),
    "food_clock": (("temperature_c", "REAL"),),
}


def migrate(db: sqlite3.Connection) -> None:
    """Add the columns a file written by an older agent lacks; forget the monotonic
    times of earlier runs (they cannot be corrected from this run's clock). Never
    raises: an error is logged, and said again by the first write that fails."""
    try:
        for table, columns in _ADDED.items():
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        db.execute("UPDATE readings SET mono = NULL WHERE mono IS NOT NULL")
        db.execute(
            "UPDATE excursions SET start_mono = NULL, end_mono = NULL"
            " WHERE start_mono IS NOT NULL OR end_mono IS NOT NULL"
        )
    except sqlite3.Error as exc:  # said at the first write that fails
        log.error("records.migrate_failed", error=str(exc))


def column(db: sqlite3.Connection, table: str, name: str) -> str:
    """``name`` when ``table`` has that column, else ``NULL``: a reader's SELECT for a
    file an older agent wrote and no newer one has opened yet (read-only, unmigrated).
    Raises ``sqlite3.Error`` as the read would."""
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    return name if name in have else "NULL"
