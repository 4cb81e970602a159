"""The outbox: feedback waiting for the cloud, durable across crashes and power cuts.

One SQLite file under ``[storage] dir``. Rules:

- A change is committed (WAL, ``synchronous=FULL``) before it is shown anywhere
  else: the locker appends, then updates its state and logs.
- Rows are ordered by ``seq``, an ever-growing integer, never by wall time, so a
  clock jump (no RTC on a Pi until NTP syncs) changes nothing.
- A row is deleted only after the cloud answered 2xx for it; rows in flight when
  the process died are sent again after restart (at least once, in order).
- A batch is consecutive door changes with distinct doors: a door's consecutive
  changes are never merged into one POST, so none can be merged away.
- A body the cloud will never accept (a 4xx other than auth and throttling) moves
  to the ``dead`` table with the answer, so the queue never blocks for good.
- A damaged file (at start or while running) is set aside and replaced
  (``agent.storage.sqlite``): ``on_replaced`` is called so the locker can queue a fresh
  snapshot; a row whose cabinets are not JSON is moved to ``dead``, never a plug.
- In-memory counts move only after a COMMIT; ages come from the monotonic clock.
- Bounded (rows and bytes). When full, what goes first: pending heartbeats, then
  start-up snapshots, then the oldest door changes, and alarms last, each dropped
  row logged and counted (never silently); an alarm goes with its ``_cleared`` and
  a clearing is never queued without its alarm (``agent.storage.eviction``). A
  new heartbeat replaces a pending one: it says the same, later.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from agent.storage import eviction
from agent.storage.message import Kind, Message
from agent.storage.sqlite import Database, OnFile

T = TypeVar("T")

log = structlog.get_logger(__name__)

OUTBOX_FILE = "outbox.sqlite3"


DEAD_DROPPED = "dead_letter"  # the counter of dead letters dropped at the bound

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, event TEXT NOT NULL, cabinets TEXT NOT NULL, created REAL NOT NULL,
    detail TEXT);
CREATE TABLE IF NOT EXISTS dead (seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL, event TEXT NOT NULL, cabinets TEXT NOT NULL, created REAL NOT NULL,
    died REAL NOT NULL, status INTEGER NOT NULL, answer TEXT NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OutboxError(Exception):
    """The outbox could not write (disk full, I/O error): said in /healthz until a write works."""


class Outbox(OnFile):
    """The outbox file at ``path``, bounded; never raises for the file's sake.

    At most ``max_rows`` messages and ``max_bytes`` of cabinets JSON; batches of at
    most ``batch_limit``. ``on_replaced(why)``: called after a damaged file was set
    aside and replaced while running. ``clock``: monotonic seconds, for ages.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
        batch_limit: int = 50,
        on_replaced: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self.batch_limit = batch_limit
        self.on_replaced = on_replaced
        self._clock = clock
        self._write_error: str | None = None
        self._ready = asyncio.Event()
        self.appended = asyncio.Event()  # set on every append; a reader clears it
        self._file = Database(self.path, SCHEMA + eviction.SCHEMA, self._replaced)
        self._db = self._file.db
        self._migrate()
        self._ages: deque[tuple[int, float]] = deque()  # (seq, clock()) this process
        self._opened_at = clock()
        self._recount()
        if self._rows:
            log.info("outbox.backlog", pending=self._rows, path=str(self.path))

    def close(self) -> None:
        """Close the file (everything is committed already)."""
        self._db.close()

    # --- writing ---------------------------------------------------------------

    def append(
        self,
        kind: Kind,
        event: str,
        cabinets: list[dict[str, Any]],
        detail: dict[str, Any] | None = None,
    ) -> Message | None:
        """Commit one message; OutboxError when the disk refuses (nothing half-written).

        ``detail``: more of the event than its type (``{"bus": ..., "board": ...}``).
        None, and nothing queued, for the clearing of an alarm that a full outbox
        dropped unsent (dropped too, counted and logged: never a lone clearing).
        """
        payload = json.dumps(cabinets, separators=(",", ":"))
        told = None if detail is None else json.dumps(detail, separators=(",", ":"))
        created = time.time()

        subject = eviction.subject_of(cabinets, detail)
        clears = eviction.raise_of(event) if kind == "alarm" else None

        def write() -> int | None:
            if kind == "heartbeat":
                self._delete_where("kind = 'heartbeat'")
            if kind == "alarm" and clears is None:  # raised again: the cloud hears this one
                eviction.forget_unsent(self._db, event, subject)
            if clears is not None and self._orphaned(event, clears, subject):
                return None
            self._make_room(len(payload))
            if clears is not None and self._orphaned(event, clears, subject):
                self._delta[0] -= 1  # its alarm was dropped just now, to make room for it
                self._delta[1] -= len(payload)
                return None
            cur = self._db.execute(
                "INSERT INTO outbox (kind, event, cabinets, created, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                (kind, event, payload, created, told),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

        try:
            seq = self._commit(write, "write")
        except OutboxError as exc:
            self._write_error = str(exc)
            log.error("outbox.write_failed", kind=kind, event_type=event, cabinets=cabinets)
            raise
        self._write_error = None
        if seq is None:
            return None
        self._ages.append((seq, self._clock()))
        while len(self._ages) > self._rows:  # acked or dropped meanwhile: never more kept
            self._ages.popleft()  # than pending (the oldest age is then an upper bound)
        self.appended.set()
        return Message(seq, kind, event, tuple(cabinets), created, detail)

    def ack(self, seqs: list[int]) -> None:
        """The cloud took these: forget them. Raises OutboxError when the disk refuses."""
        self._commit(lambda: self._delete_where(f"seq IN ({_marks(seqs)})", seqs), "delete")

    def bury(self, seqs: list[int], status: int, answer: str) -> None:
        """The cloud will never take these: keep them aside, with its answer. Raises
        OutboxError when the disk refuses."""

        def move() -> None:
            moved = self._db.execute(
                "INSERT OR REPLACE INTO dead (seq, kind, event, cabinets, created, died, status,"
                " answer, detail) SELECT seq, kind, event, cabinets, created, ?, ?, ?, detail"
                " FROM outbox"
                f" WHERE seq IN ({_marks(seqs)}) RETURNING length(cabinets)",
                (time.time(), status, answer, *seqs),
            ).fetchall()
            self._delta[2] += len(moved)
            self._delta[3] += sum(n for (n,) in moved)
            self._delete_where(f"seq IN ({_marks(seqs)})", seqs)
            self._trim_dead()

        self._commit(move, "bury")

    def _trim_dead(self) -> None:
        """Dead letters under the outbox's own limits, the oldest dropped first, counted:
        a cloud that refuses every body for good must not fill the disk."""
        while (rows := self._dead[0] + self._delta[2]) > self._max_rows or (
            rows > 1 and self._dead[1] + self._delta[3] > self._max_bytes
        ):
            seq, length = self._db.execute(
                "DELETE FROM dead WHERE seq = (SELECT min(seq) FROM dead)"
                " RETURNING seq, length(cabinets)"
            ).fetchone()
            self._delta[2] -= 1
            self._delta[3] -= length
            self._count(DEAD_DROPPED)
            log.warning("outbox.dead_letter_dropped", seq=seq)

    # --- reading ---------------------------------------------------------------

    def next_batch(self) -> list[Message]:
        """The oldest message, with the door changes right behind it while doors differ."""
        batch: list[Message] = []
        doors: set[tuple[int, str]] = set()
        for msg in self.pending(self.batch_limit):
            if batch and (
                msg.kind != "change" or batch[0].kind != "change" or msg.event != batch[0].event
            ):
                break
            if msg.doors() & doors:
                break
            batch.append(msg)
            doors |= msg.doors()
        return batch

    def pending(self, limit: int = 100) -> list[Message]:
        """The oldest ``limit`` messages waiting for the cloud, in order; a damaged row
        is moved to ``dead`` on the way. Raises OutboxError when the file cannot be read."""
        sql = "SELECT seq, kind, event, cabinets, created, detail FROM outbox ORDER BY seq LIMIT ?"
        try:
            rows = self._db.execute(sql, (limit,)).fetchall()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            if not self._file.replace_if_damaged(exc):
                raise OutboxError(f"outbox cannot read: {exc}") from exc
            try:  # a fresh file, holding what could be read of the old one
                rows = self._db.execute(sql, (limit,)).fetchall()
            except (sqlite3.Error, UnicodeDecodeError) as again:
                raise OutboxError(f"outbox cannot read: {again}") from again
        out = []
        for row in rows:
            try:
                out.append(Message.from_row(row))
            except ValueError as exc:
                log.error("outbox.damaged_row", seq=row[0], error=str(exc))
                self.bury([row[0]], 0, f"damaged row: {exc}")
        return out

    def dead(self, limit: int = 100) -> list[dict[str, Any]]:
        """Messages the cloud refused for good, with its answer, oldest first."""
        rows = self._db.execute(
            "SELECT seq, kind, event, cabinets, created, died, status, answer FROM dead"
            " ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        names = ("seq", "kind", "event", "cabinets", "created", "died", "status", "answer")
        return [dict(zip(names, r, strict=True)) for r in rows]

    async def wait(self) -> None:
        """Return when something is pending."""
        await self._ready.wait()

    def stats(self) -> dict[str, Any]:
        """Figures for /healthz: ``pending``, ``bytes``, ``oldest_age_s``, ``dead``, ``dropped``.

        ``oldest_age_s``: monotonic, at least since this process opened the file;
        ``dropped``: counts by kind when full; ``dead_dropped``: dead letters dropped.
        """
        try:
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            oldest = self._db.execute("SELECT seq FROM outbox ORDER BY seq LIMIT 1").fetchone()
        except (sqlite3.Error, UnicodeDecodeError):
            counters, oldest = {}, None
        return {
            "pending": self._rows,
            "bytes": self._bytes,
            "oldest_age_s": round(self._age(oldest[0]), 1) if oldest else 0.0,
            "dead": self._dead[0],
            "dropped": counters,
            "dead_dropped": counters.pop(DEAD_DROPPED, 0),
        }

    def problems(self) -> list[str]:
        """Health lines: a write that failed, no durable file, or an outbox nearly full."""
        out = []
        if self._write_error:
            out.append(self._write_error)
        if self._file.in_memory and self.notice:
            out.append(self.notice)
        if self._rows >= 0.9 * self._max_rows or self._bytes >= 0.9 * self._max_bytes:
            out.append(f"outbox nearly full: {self._rows} messages, {self._bytes} bytes pending")
        return out

    # --- internals -------------------------------------------------------------

    def _commit(self, work: Callable[[], T], verb: str) -> T:
        """Run ``work`` in one transaction; the counts move only once it committed.
        Raises OutboxError ("outbox cannot <verb>: ...") when the disk refuses."""

        def counted() -> T:
            self._delta = [0, 0, 0, 0]  # pending rows, bytes; dead rows, bytes
            return work()

        try:
            result = self._file.transaction(counted)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise OutboxError(f"outbox cannot {verb}: {exc}") from exc
        self._rows += self._delta[0]
        self._bytes += self._delta[1]
        self._dead[0] += self._delta[2]
        self._dead[1] += self._delta[3]
        self._set_ready()
        return result

    def _migrate(self) -> None:
        """A file from before events had details: give its tables the column."""
        for table in ("outbox", "dead"):
            columns = [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]
            if "detail" not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN detail TEXT")

    def _replaced(self, notice: str) -> None:
        """The file was damaged and replaced (by ``Database``): count afresh, tell."""
        self._db = self._file.db
        self._ages.clear()
        self._recount()
        if self.on_replaced is not None:
            self.on_replaced(notice)

    def _age(self, seq: int) -> float:
        while self._ages and self._ages[0][0] < seq:
            self._ages.popleft()
        since = self._opened_at
        if self._ages and self._ages[0][0] == seq:
            since = self._ages[0][1]
        return max(0.0, self._clock() - since)

    def _recount(self) -> None:
        self._rows, self._bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(length(cabinets)), 0) FROM outbox"
        ).fetchone()
        self._dead = list(
            self._db.execute(
                "SELECT count(*), coalesce(sum(length(cabinets)), 0) FROM dead"
            ).fetchone()
        )
        self._set_ready()

    def _set_ready(self) -> None:
        if self._rows > 0:
            self._ready.set()
        else:
            self._ready.clear()

    def _delete_where(self, where: str, params: list[Any] | tuple[Any, ...] = ()) -> None:
        gone = self._db.execute(
            f"DELETE FROM outbox WHERE {where} RETURNING length(cabinets)", params
        ).fetchall()
        self._delta[0] -= len(gone)
        self._delta[1] -= sum(n for (n,) in gone)

    def _count(self, name: str) -> None:
        self._db.execute(
            "INSERT INTO counters VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )

    def _make_room(self, size: int) -> None:
        self._delta[0] += 1
        self._delta[1] += size
        while (rows := self._rows + self._delta[0]) > 1 and (
            rows > self._max_rows or self._bytes + self._delta[1] > self._max_bytes
        ):
            gone = eviction.victims(self._db)
            if not gone:
                return
            for seq, kind, cabinets, why in gone:
                self._delete_where("seq = ?", (seq,))
                self._count(kind)
                level = log.error if kind in ("change", "alarm") else log.warning
                level("outbox.full_dropped", seq=seq, kind=kind, cabinets=cabinets, why=why)

    def _orphaned(self, event: str, clears: str, subject: tuple[Any, ...]) -> bool:
        """Whether the clearing ``event`` lost its alarm to a full outbox: then it is
        dropped too (counted, logged), and the note of its alarm forgotten."""
        if not eviction.forget_unsent(self._db, clears, subject):
            return False
        self._count("alarm")
        log.error("outbox.full_dropped", kind="alarm", event_type=event, why="alarm unsent")
        return True


def _marks(seqs: list[int]) -> str:
    return ",".join("?" * len(seqs))
