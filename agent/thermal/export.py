"""The records as CSV, for an inspector or a spreadsheet (``locker-agent thermal log``):
read-only from the storage directory while the agent runs.

``readings``: ``key,t,temperature_c,mode,sensor,clock,note``; ``excursions``:
``key,start,end,duration_s,peak_c,mode,clock``; times ISO 8601 UTC; ``clock`` empty
when the wall clock was known right, else ``unsure``, ``corrected`` or ``outage``
(``records.py``); ``note`` empty, or an empty cabinet's label past its line
(``pull-down``, ``pre-heat``, ``empty``: ADR 0021). Excursions are food's only.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.thermal.records import RecordsError
from agent.thermal.schema import column
from agent.thermal.times import iso

CSV_FIELDS = ("key", "t", "temperature_c", "mode", "sensor", "clock", "note")

_EXPORTS = {
    "readings": (
        CSV_FIELDS,
        "SELECT key, t, temperature_c, mode, sensor, clock, {note} FROM readings WHERE t >= ?",
        "key, t",
    ),
    "excursions": (
        ("key", "start", "end", "duration_s", "peak_c", "mode", "clock"),
        "SELECT key, start, end, end - start, peak_c, mode, clock FROM excursions"
        " WHERE start >= ? AND {kind} IS NULL",
        "key, start",
    ),
}


def export_csv(
    path: Path, key: int | None = None, since: float = 0.0, table: str = "readings"
) -> Iterator[str]:
    """The ``readings`` or ``excursions`` of the file at ``path``, as CSV lines, streamed.

    ``readings``: ``key,t,temperature_c,mode,sensor,clock,note``; ``excursions``:
    ``key,start,end,duration_s,peak_c,mode,clock``; times ISO 8601 UTC. Read-only (the
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
            sql = sql.format(
                note=column(db, "readings", "note"), kind=column(db, "excursions", "kind")
            )
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
        k, t, temp, mode, sensor, clock, note = row
        cells: tuple[Any, ...] = (k, iso(t), _two(temp), mode, sensor, clock or "", note or "")
    else:
        k, start, end, duration, peak, mode, clock = row
        end_text = "" if end is None else iso(end)
        length = "" if duration is None else round(max(0.0, duration))
        cells = (k, iso(start), end_text, length, _two(peak), mode, clock or "")
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def _two(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
