"""One cabinet's HACCP day, read from the records (``thermal.sqlite3``) and the command
records (``state.sqlite3``), read-only while the agent runs, for ``report.py``.

A day is local midnight to midnight in ``tz`` (a day of 23 or 25 hours at a clock
change). Times stay UNIX seconds here; the sheet writes them in ``tz``.

- readings: ``(t, temperature_c or None, mode, sensor, clock, note)`` (``note``: an
  empty cabinet's label past its line, ``pull-down``, ``pre-heat`` or ``empty``);
- excursions open or ended that day: start, end (None: still open at the last record),
  the worst temperature, the mode, the clock's note;
- the empty cabinet's times past its line that day (``empty``: no food, no
  excursion, ADR 0021), as the excursions, with their label last;
- actions, what was done about it, with who and when: latches (a safety shut-off,
  ``latched``) and their resets (``by``), and the commands the cloud or a technician sent
  to the cabinet that change what it holds or whether it is used (``disable``,
  ``enable``, ``set_thermal_mode``), with ``acted_by`` and ``reason`` as they came.

Raises ``RecordsError`` when a file exists and cannot be read; a missing
``state.sqlite3`` only leaves the commands out.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.thermal.records import RecordsError
from agent.thermal.schema import column

ACTED_COMMANDS = ("disable", "enable", "set_thermal_mode")
_OUTCOME = {200: "done", 0: "refused", -1: "interrupted (outcome unknown)"}


@dataclass(frozen=True, slots=True)
class Action:
    """One corrective action or safety event: at ``t``, ``what`` happened, ``by`` whom
    (None: the agent itself), ``why``, and how it ended (``outcome``)."""

    t: float
    what: str
    by: str | None
    why: str
    outcome: str = "done"


@dataclass(slots=True)
class CabinetDay:
    """Everything one cabinet's sheet shows (see the module's docstring)."""

    key: int
    start: float
    end: float
    readings: list[tuple[float, float | None, str, str, str | None, str | None]] = field(
        default_factory=list
    )
    excursions: list[tuple[float, float | None, float | None, str, str | None]] = field(
        default_factory=list
    )
    empty: list[tuple[float, float | None, float | None, str, str | None, str]] = field(
        default_factory=list
    )
    actions: list[Action] = field(default_factory=list)


def day_bounds(day: date, tz: tzinfo) -> tuple[float, float]:
    """Local midnight of ``day`` and of the next, in ``tz``, as UNIX seconds."""
    start = datetime.combine(day, time(), tz)
    end = datetime.combine(day + timedelta(days=1), time(), tz)
    return start.timestamp(), end.timestamp()


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise RecordsError(f"{path}: {exc}") from exc
    try:
        yield db
    except sqlite3.Error as exc:
        raise RecordsError(f"{path}: {exc}") from exc
    finally:
        db.close()


def read_day(
    records: Path, state: Path | None, keys: list[int], day: date, tz: tzinfo
) -> list[CabinetDay]:
    """Each of ``keys``' day from the records file ``records`` and, when it exists, the
    state store ``state``. Raises ``RecordsError`` (no records file, unreadable)."""
    if not records.is_file():
        raise RecordsError(f"{records}: no temperature records here (is this the storage dir?)")
    start, end = day_bounds(day, tz)
    days = {key: CabinetDay(key, start, end) for key in keys}
    with _read_only(records) as db:
        note, kind = column(db, "readings", "note"), column(db, "excursions", "kind")
        for key, cab in days.items():
            cab.readings = db.execute(
                f"SELECT t, temperature_c, mode, sensor, clock, {note} FROM readings"
                " WHERE key = ? AND t >= ? AND t < ? ORDER BY t",
                (key, start, end),
            ).fetchall()
            for *row, label in db.execute(
                f"SELECT start, end, peak_c, mode, clock, {kind} FROM excursions WHERE key = ?"
                " AND start < ? AND (end IS NULL OR end >= ?) ORDER BY start",
                (key, end, start),
            ):
                if label is None:
                    cab.excursions.append(tuple(row))  # type: ignore[arg-type]
                else:
                    cab.empty.append((*row, label))  # type: ignore[arg-type]
            for t, event, alarm, why, by in db.execute(
                "SELECT t, event, alarm, why, by FROM latch_log WHERE key = ? AND t >= ?"
                " AND t < ? ORDER BY t, rowid",
                (key, start, end),
            ):
                what = (
                    f"{alarm} latched: outputs held off"
                    if event == "latched"
                    else (f"{alarm} reset by a technician")
                )
                if event == "latched" and alarm == "temperature_over_limit":
                    what += ", heaters cut, cabinet disabled"
                cab.actions.append(Action(t, what, by, why))
    if state is not None and state.is_file():
        for key, actions in _commands(state, keys, start, end).items():
            days[key].actions.extend(actions)
    for cab in days.values():
        cab.actions.sort(key=lambda a: a.t)
    return list(days.values())


def _commands(state: Path, keys: list[int], start: float, end: float) -> dict[int, list[Action]]:
    """The remembered commands of that day that change what a cabinet holds or whether
    it is used, by cabinet (the fingerprint is ``"<key>:<command JSON>"``)."""
    out: dict[int, list[Action]] = {}
    with _read_only(state) as db:
        rows = db.execute(
            "SELECT id, fingerprint, at, status FROM commands WHERE at >= ? AND at < ? ORDER BY at",
            (start, end),
        ).fetchall()
    for command_id, fingerprint, at, status in rows:
        key_text, _, body_text = str(fingerprint).partition(":")
        try:
            key, body = int(key_text), json.loads(body_text)
        except ValueError:
            continue  # a row written by another version: not this sheet's to guess
        if key not in keys or not isinstance(body, dict):
            continue
        name = body.get("command")
        if name not in ACTED_COMMANDS:
            continue
        what = f"set to {body.get('thermal_mode')}" if name == "set_thermal_mode" else name + "d"
        out.setdefault(key, []).append(
            Action(
                at,
                what,
                _who(str(command_id), body),
                str(body.get("reason") or ""),
                _OUTCOME.get(status, "refused"),
            )
        )
    return out


def _who(command_id: str, body: dict[str, Any]) -> str:
    """Who sent a command: the cloud (its user id when ``acted_by`` came) or the local API."""
    source = "the cloud" if command_id.startswith("cloud:") else "a technician (local API)"
    if body.get("acted_by") is not None:
        source += f", user {body['acted_by']}"
    return source


def zone_name(tz: tzinfo, day: date) -> str:
    """``Europe/London (UTC+00:00)``: the zone and its offset at noon of ``day``."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz)
    offset = noon.strftime("%z")
    name = getattr(tz, "key", None) or noon.tzname() or "local time"
    return f"{name} (UTC{offset[:3]}:{offset[3:]})"


def local_zone(localtime: Path = Path("/etc/localtime")) -> tzinfo:
    """This machine's zone with its rules (``$TZ``, else what ``/etc/localtime`` links
    to), so a summer day asked in winter gets its summer offset; a fixed offset when
    neither names one."""
    names = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        names.append(str(localtime.resolve()).partition("/zoneinfo/")[2])
    for name in filter(None, names):
        with contextlib.suppress(ValueError, ZoneInfoNotFoundError):
            return ZoneInfo(name)
    return datetime.now(UTC).astimezone().tzinfo or UTC
