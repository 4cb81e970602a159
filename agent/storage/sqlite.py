"""Opening the agent's SQLite files so that a damaged SD card never keeps a locker down.

SQLite files do get damaged on SD cards (power cuts, ``data=writeback``). A file
that is not a database, or whose pages are malformed, is moved aside (kept for a
person, named with the time: ``outbox.sqlite3.damaged-20261129T101500Z``) and
replaced by a fresh one; the caller is told, so that it can say so loudly and
send the cloud a new snapshot. A directory where nothing can be written gives an
in-memory database instead, with the path in the problem: the locker goes on
polling and opening, and ``/healthz`` says what is not being kept.

Damage is told apart from a passing fault by SQLite's own codes: SQLITE_CORRUPT
and SQLITE_NOTADB are damage; a full disk or an I/O error is not (the write is
retried, the file kept).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from agent.storage.salvage import Salvaged, columns_of, salvage

T = TypeVar("T")

log = structlog.get_logger(__name__)

WAL_LIMIT_BYTES = 512 * 1024
_CORRUPT = 11  # SQLITE_CORRUPT
_NOTADB = 26  # SQLITE_NOTADB


def is_damage(exc: BaseException) -> bool:
    """Whether an error says the file itself is damaged (not a full disk): SQLite's
    own codes, or text in the file that is not UTF-8 (a flipped byte in the schema)."""
    if isinstance(exc, UnicodeDecodeError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and code is not None
        and code & 0xFF
        in (
            _CORRUPT,
            _NOTADB,
        )
    )


@dataclass(frozen=True, slots=True)
class Opened:
    """An open database; ``problem`` says what went wrong on the way, if anything
    (a damaged file set aside, or no writable directory)."""

    db: sqlite3.Connection
    problem: str | None = None
    set_aside: Path | None = None  # where a damaged file was moved
    recovered: int = 0  # rows read back from the damaged file
    lost: int = 0  # rows that could not be (at most this many)


def open_db(path: Path, schema: str) -> Opened:
    """Open ``path`` (WAL, ``synchronous=FULL``) with ``schema``; never raises for the file.

    A damaged file is set aside and replaced; an unwritable place gives an
    in-memory database.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Opened(_open(path, schema))
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        if not is_damage(exc):
            return _in_memory(path, schema, exc)
        aside = set_aside(path)
        log.error("storage.damaged", path=str(path), error=str(exc), set_aside=str(aside))
        try:
            db = _open(path, schema)
        except (sqlite3.Error, OSError) as again:
            return _in_memory(path, schema, again)
        found = restore(db, aside)
        problem = f"{path} was damaged ({exc}); set aside as {aside.name}, {_told(found)}"
        return Opened(db, problem, aside, found.recovered, found.lost)
    except OSError as exc:
        return _in_memory(path, schema, exc)


def set_aside(path: Path) -> Path:
    """Move ``path`` and its WAL files aside, named with the time; returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        try:
            src.rename(Path(f"{aside}{suffix}"))
        except FileNotFoundError:
            continue
        except OSError as exc:  # cannot move it: get it out of the way at least
            log.error("storage.set_aside_failed", path=str(src), error=str(exc))
            src.unlink(missing_ok=True)
    return aside


def restore(db: sqlite3.Connection, aside: Path) -> Salvaged:
    """Copy every readable row of the damaged file ``aside`` into the fresh ``db``,
    rowids kept (an outbox's order is its rowids). Never raises for either file."""
    try:
        found = salvage(aside, columns_of(db))
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        log.error("storage.salvage_failed", path=str(aside), error=str(exc))
        return Salvaged(unreadable=True)
    try:
        db.execute("BEGIN IMMEDIATE")
        for table, rows in found.rows.items():
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                names = ", ".join(["rowid", *found.columns[table]])
                db.executemany(f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({marks})', rows)
        db.execute("COMMIT")
    except sqlite3.Error as exc:  # a full disk: the fresh file stays empty, said
        if db.in_transaction:
            db.execute("ROLLBACK")
        log.error("storage.salvage_unsaved", path=str(aside), error=str(exc))
        return Salvaged(lost=found.recovered + found.lost)
    log.warning("storage.salvaged", path=str(aside), recovered=found.recovered, lost=found.lost)
    return found


def _told(found: Salvaged) -> str:
    if found.unreadable and not found.recovered:
        return "started afresh: nothing in it could be read"
    return (
        f"started afresh with the {found.recovered} rows that could be read"
        f" ({found.lost} could not)"
    )


def _open(path: Path, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # per connection; NORMAL can lose commits
        # A small WAL, given back after each checkpoint: at SQLite's default (1000
        # pages, ~4 MB) the WAL alone can fill a small data partition and wedge every
        # write for good, across restarts, with nothing pending (found by the soak).
        db.execute("PRAGMA wal_autocheckpoint=100")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
        if verdict != "ok":
            error = sqlite3.DatabaseError(f"quick_check: {verdict}")
            error.sqlite_errorcode = _CORRUPT  # type: ignore[attr-defined]
            raise error
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


def _in_memory(path: Path, schema: str, exc: BaseException) -> Opened:
    reason = getattr(exc, "strerror", None) or str(exc)
    problem = f"cannot keep {path} ({reason}): nothing survives a restart"
    log.error("storage.unwritable", path=str(path), error=reason)
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(schema)
    return Opened(db, problem)


class Database:
    """One SQLite file that replaces itself when it turns out damaged.

    ``on_replaced(notice)`` is called after a damaged file was set aside and a
    fresh one opened, before the failed work is tried again, so the owner can
    reset what it counted. ``notice`` says what went wrong with the file (until
    restart); ``in_memory`` is True when nothing is kept on disk.
    """

    def __init__(
        self, path: Path, schema: str, on_replaced: Callable[[str], None] | None = None
    ) -> None:
        self.path = path
        self._schema = schema
        self.on_replaced = on_replaced
        opened = open_db(path, schema)
        self.db = opened.db
        self.notice = opened.problem
        self.in_memory = opened.problem is not None and opened.set_aside is None
        self.recovered, self.lost = opened.recovered, opened.lost  # rows, since start

    def close(self) -> None:
        """Close the file."""
        self.db.close()

    def transaction(self, work: Callable[[], T]) -> T:
        """Run ``work`` inside BEGIN IMMEDIATE ... COMMIT (rolled back on any error).
        On a damaged file: replace it and run ``work`` once more. Raises sqlite3.Error."""
        for attempt in (1, 2):
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    result = work()
                    self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    raise
                return result
            except (sqlite3.Error, UnicodeDecodeError) as exc:
                if attempt == 2 or not self.replace_if_damaged(exc):
                    raise
        raise AssertionError("unreachable")

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """All rows of a query; a damaged file is replaced (and the error raised)."""
        try:
            return self.db.execute(sql, params).fetchall()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self.replace_if_damaged(exc)
            raise

    def replace_if_damaged(self, exc: BaseException) -> bool:
        """Set the file aside and start afresh if ``exc`` says it is damaged; whether it did."""
        if not is_damage(exc):
            return False
        self.db.close()
        aside = set_aside(self.path)
        opened = open_db(self.path, self._schema)
        self.db = opened.db
        self.in_memory = opened.problem is not None and opened.set_aside is None
        found = restore(self.db, aside) if not self.in_memory else Salvaged(unreadable=True)
        self.recovered += opened.recovered + found.recovered
        self.lost += opened.lost + found.lost
        self.notice = f"{self.path} was damaged ({exc}); set aside as {aside.name}, {_told(found)}"
        log.error("storage.replaced", path=str(self.path), error=str(exc), set_aside=str(aside))
        if self.on_replaced is not None:
            self.on_replaced(self.notice)
        return True


class OnFile:
    """What a store kept in one SQLite file says of it; the store sets ``_file``."""

    _file: Database

    @property
    def salvaged(self) -> tuple[int, int]:
        """Rows read back from damaged copies since start, and rows that could not be."""
        return self._file.recovered, self._file.lost

    @property
    def notice(self) -> str | None:
        """What went wrong with the file since start (set aside, or kept in memory)."""
        return self._file.notice

    @property
    def in_memory(self) -> bool:
        """True when nothing is kept on disk (no writable place)."""
        return self._file.in_memory

    def close(self) -> None:
        """Close the file."""
        self._file.close()
