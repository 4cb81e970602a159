"""What a full outbox drops, and in what order: never an alarm before a door change,
never a clearing without its alarm.

Order: pending heartbeats, then start-up snapshots, then the oldest door changes,
and alarms last. A clearing is ``<alarm>_cleared``, ``board_online`` after
``board_offline`` or ``bus_online`` after ``bus_offline``, of the same alarm about
the same cabinet (the event's ``key``, else the first cabinet's), bus and board
(``detail``); the side is not in the row, so a cabinet's front and rear alarm of one
name pair either way (the cloud hears one raise and one clearing for that cabinet
just the same).

Among alarms, what goes first:

1. the oldest alarm whose clearing is also pending, together with that clearing:
   the cloud misses an episode that is over;
2. then the oldest clearing whose alarm was sent already: the cloud keeps an alarm
   that is over (a false alarm, never a missed one);
3. only then the oldest alarm still active, noted in the ``unsent_raise`` table so
   that its clearing, when it comes, is dropped as well rather than queued
   (``Outbox.append`` asks ``forget_unsent``); a new raise of it removes the note.

Functions work on the outbox's open connection, inside its transaction; the
caller deletes, counts and logs what they name. SQL errors propagate
(``sqlite3.Error``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agent.storage.message import Kind

# Lower goes first when the outbox is full; alarms last, and then by ``victims``.
DROP_ORDER: tuple[Kind, ...] = ("heartbeat", "snapshot", "change", "alarm")

SCHEMA = """
CREATE TABLE IF NOT EXISTS unsent_raise (event TEXT NOT NULL, key, bus, board);
"""

CLEARED = "_cleared"  # the clearing of alarm X is X_cleared ...
_ONLINE = {"board_online": "board_offline", "bus_online": "bus_offline"}  # ... or these

# What an alarm is about, read from an outbox row {r}: (SQL, column of unsent_raise).
# The key: none for a bus or board event (its bus and board say it; the cabinets it
# carries are those known when it was sent, ADR 0019), else the event's own ``key``
# (a cabinet with no door known: it carries the locker's known cabinets, not its
# own, ADR 0019), else the first cabinet's.
_DETAIL = "(CASE WHEN json_valid({r}.detail) THEN {r}.detail END)"  # NULL when damaged
_CABINETS = "(CASE WHEN json_valid({r}.cabinets) THEN {r}.cabinets END)"
_KEY = (
    f"CASE WHEN json_extract({_DETAIL}, '$.bus') IS NOT NULL THEN NULL"
    f" ELSE coalesce(json_extract({_DETAIL}, '$.key'), json_extract({_CABINETS}, '$[0].key')) END"
)
_SUBJECT = (
    (_KEY, "key"),
    ("CASE WHEN json_valid({r}.detail) THEN json_extract({r}.detail, '$.bus') END", "bus"),
    ("CASE WHEN json_valid({r}.detail) THEN json_extract({r}.detail, '$.board') END", "board"),
)

Victim = tuple[int, Kind, str, str]
"""A row to drop: (seq, kind, cabinets JSON, why: for the log)."""


def raise_of(event: str) -> str | None:
    """The alarm that ``event`` clears (``door_forced_open`` for
    ``door_forced_open_cleared``); None when ``event`` is not a clearing."""
    if event in _ONLINE:
        return _ONLINE[event]
    if event.endswith(CLEARED):
        return event[: -len(CLEARED)]
    return None


def subject_of(cabinets: list[dict[str, Any]], detail: dict[str, Any] | None) -> tuple[Any, ...]:
    """What an alarm about to be appended is about, as read from its row: (key, bus, board)."""
    told = detail or {}
    key = told.get("key")  # as _KEY: a cabinet named by the event, not the cabinets carried
    if key is None and cabinets and isinstance(cabinets[0], dict):
        key = cabinets[0].get("key")
    if told.get("bus") is not None:
        key = None  # as _KEY: a bus or board event is about its bus and board
    return key, told.get("bus"), told.get("board")


def victims(db: sqlite3.Connection) -> list[Victim]:
    """The next rows to drop (one, or an alarm with its clearing); [] when empty."""
    first = db.execute(
        "SELECT seq, kind, cabinets FROM outbox ORDER BY CASE kind "
        + " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(DROP_ORDER))
        + " END, seq LIMIT 1"
    ).fetchone()
    if first is None:
        return []
    if first[1] != "alarm":
        return [(*first, "full")]
    return _alarm_victims(db)  # nothing else is left


def forget_unsent(db: sqlite3.Connection, event: str, subject: tuple[Any, ...]) -> bool:
    """Remove the note that alarm ``event`` about ``subject`` was dropped unsent;
    whether there was one."""
    where = " AND ".join(f"{name} IS ?" for _, name in _SUBJECT)
    gone = db.execute(
        f"DELETE FROM unsent_raise WHERE event = ? AND {where} RETURNING event",
        (event, *subject),
    ).fetchall()
    return bool(gone)


def _alarm_victims(db: sqlite3.Connection) -> list[Victim]:
    """Rules 1-3 of the module docstring. Each clearing is paired with the row just
    before it of the same alarm and subject: its alarm when that is a raise (levels
    alternate), else it is lone. One window query: O(n log n) in the alarms pending."""
    subject = ", ".join(f"{sql.format(r='outbox')} AS s{i}" for i, (sql, _) in enumerate(_SUBJECT))
    parts = ", ".join(f"s{i}" for i in range(len(_SUBJECT)))
    clearing = db.execute(
        "WITH a AS (SELECT seq, event, cabinets,"
        f" {_raise_of_sql('event')} AS clears, {subject} FROM outbox WHERE kind = 'alarm'),"
        " w AS (SELECT seq, cabinets, clears, lag(seq) OVER p AS prev,"
        " lag(cabinets) OVER p AS prev_cabinets, lag(clears) OVER p AS prev_clears FROM a"
        f" WINDOW p AS (PARTITION BY coalesce(clears, event), {parts} ORDER BY seq)),"
        " c AS (SELECT *, prev IS NOT NULL AND prev_clears IS NULL AS paired FROM w"
        " WHERE clears IS NOT NULL)"
        " SELECT seq, cabinets, paired, prev, prev_cabinets FROM c"
        " ORDER BY paired DESC, CASE WHEN paired THEN prev ELSE seq END LIMIT 1"
    ).fetchone()
    if clearing is not None:
        seq, cabinets, paired, raised, raised_cabinets = clearing
        if not paired:
            return [(seq, "alarm", cabinets, "a clearing of an alarm sent already")]
        return [
            (raised, "alarm", raised_cabinets, f"an ended alarm, with its clearing (seq {seq})"),
            (seq, "alarm", cabinets, f"a clearing, with its alarm (seq {raised})"),
        ]
    about = ", ".join(sql.format(r="outbox") for sql, _ in _SUBJECT)
    seq, event, cabinets, *about_it = db.execute(
        f"SELECT seq, event, cabinets, {about} FROM outbox WHERE kind = 'alarm'"
        " ORDER BY seq LIMIT 1"
    ).fetchone()
    db.execute("INSERT INTO unsent_raise VALUES (?, ?, ?, ?)", (event, *about_it))
    return [(seq, "alarm", cabinets, "an active alarm: its clearing will be dropped too")]


def _raise_of_sql(event: str) -> str:
    """``raise_of`` of the SQL expression ``event``, in SQL: NULL when not a clearing."""
    online = " ".join(f"WHEN {event} = '{k}' THEN '{v}'" for k, v in _ONLINE.items())
    return (
        f"CASE {online} WHEN substr({event}, -{len(CLEARED)}) = '{CLEARED}'"
        f" THEN substr({event}, 1, length({event}) - {len(CLEARED)}) END"
    )
