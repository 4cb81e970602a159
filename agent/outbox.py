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
- Bounded (rows and bytes). When full, what goes first: pending heartbeats, then
  start-up snapshots, then the oldest door changes, each dropped change logged
  and counted (never silently). A new heartbeat replaces a pending one: it says
  the same, later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

log = structlog.get_logger(__name__)

OUTBOX_FILE = "outbox.sqlite3"

Kind = Literal["change", "snapshot", "heartbeat", "alarm"]

# Lower goes first when the outbox is full.
_DROP_ORDER: tuple[Kind, ...] = ("heartbeat", "snapshot", "alarm", "change")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT    NOT NULL,
    event    TEXT    NOT NULL,
    cabinets TEXT    NOT NULL,
    created  REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    seq      INTEGER PRIMARY KEY,
    kind     TEXT    NOT NULL,
    event    TEXT    NOT NULL,
    cabinets TEXT    NOT NULL,
    created  REAL    NOT NULL,
    died     REAL    NOT NULL,
    status   INTEGER NOT NULL,
    answer   TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class OutboxError(Exception):
    """The outbox could not write (disk full, I/O error): said in /healthz until a write works."""


@dataclass(frozen=True, slots=True)
class Message:
    """One queued message: the spec's ``cabinets`` entries plus ``event.type``."""

    seq: int
    kind: Kind
    event: str
    cabinets: tuple[dict[str, Any], ...]
    created: float  # wall time, for people only: order is by seq

    def doors(self) -> set[tuple[int, str]]:
        """The (cabinet key, side) of every door status the message carries."""
        return {
            (c["key"], side)
            for c in self.cabinets
            for side in ("front", "rear")
            if c.get(f"{side}_status")
        }


def _row(row: tuple[Any, ...]) -> Message:
    seq, kind, event, cabinets, created = row
    return Message(seq, kind, event, tuple(json.loads(cabinets)), created)


class Outbox:
    """The outbox file at ``path``: at most ``max_rows`` messages and ``max_bytes`` of
    cabinets JSON; batches of at most ``batch_limit`` messages. Raises sqlite3.Error
    when the file cannot be opened."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
        batch_limit: int = 50,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # per connection; NORMAL can lose commits
        self._db.executescript(SCHEMA)
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self.batch_limit = batch_limit
        self._write_error: str | None = None
        self._ready = asyncio.Event()
        self._recount()
        if self._rows:
            log.info("outbox.backlog", pending=self._rows, path=str(self.path))

    def close(self) -> None:
        """Close the file (everything is committed already)."""
        self._db.close()

    # --- writing ---------------------------------------------------------------

    def append(self, kind: Kind, event: str, cabinets: list[dict[str, Any]]) -> Message:
        """Commit one message; OutboxError when the disk refuses (nothing half-written)."""
        payload = json.dumps(cabinets, separators=(",", ":"))
        created = time.time()
        try:
            with self._transaction():
                if kind == "heartbeat":
                    self._delete_where("kind = 'heartbeat'")
                self._make_room(len(payload))
                cur = self._db.execute(
                    "INSERT INTO outbox (kind, event, cabinets, created) VALUES (?, ?, ?, ?)",
                    (kind, event, payload, created),
                )
        except sqlite3.Error as exc:
            self._write_error = f"outbox cannot write: {exc}"
            log.error(
                "outbox.write_failed",
                kind=kind,
                event_type=event,
                cabinets=cabinets,
                error=str(exc),
            )
            raise OutboxError(self._write_error) from exc
        self._write_error = None
        self._rows += 1
        self._bytes += len(payload)
        self._ready.set()
        assert cur.lastrowid is not None
        return Message(cur.lastrowid, kind, event, tuple(cabinets), created)

    def ack(self, seqs: list[int]) -> None:
        """The cloud took these: forget them."""
        with self._transaction():
            self._delete_where(f"seq IN ({','.join('?' * len(seqs))})", seqs)

    def bury(self, seqs: list[int], status: int, answer: str) -> None:
        """The cloud will never take these: keep them aside, with its answer."""
        marks = ",".join("?" * len(seqs))
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO dead (seq, kind, event, cabinets, created, died, status,"
                f" answer) SELECT seq, kind, event, cabinets, created, ?, ?, ? FROM outbox"
                f" WHERE seq IN ({marks})",
                (time.time(), status, answer, *seqs),
            )
            self._delete_where(f"seq IN ({marks})", seqs)

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
        """The oldest ``limit`` messages waiting for the cloud, in order."""
        rows = self._db.execute(
            "SELECT seq, kind, event, cabinets, created FROM outbox ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [_row(r) for r in rows]

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
        """Figures for /healthz: ``pending``, ``bytes``, ``oldest_age_s``, ``dead``,
        ``dropped`` (by kind)."""
        oldest = self._db.execute("SELECT min(created) FROM outbox").fetchone()[0]
        counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {
            "pending": self._rows,
            "bytes": self._bytes,
            "oldest_age_s": round(max(0.0, time.time() - oldest), 1) if oldest else 0.0,
            "dead": self._db.execute("SELECT count(*) FROM dead").fetchone()[0],
            "dropped": counters,
        }

    def problems(self) -> list[str]:
        """Health lines: a write that failed, or an outbox nearly full."""
        if self._write_error:
            return [self._write_error]
        if self._rows >= 0.9 * self._max_rows or self._bytes >= 0.9 * self._max_bytes:
            return [f"outbox nearly full: {self._rows} messages, {self._bytes} bytes pending"]
        return []

    # --- internals -------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._recount()
            raise
        self._db.execute("COMMIT")

    def _recount(self) -> None:
        self._rows, self._bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(length(cabinets)), 0) FROM outbox"
        ).fetchone()
        if self._rows:
            self._ready.set()
        else:
            self._ready.clear()

    def _delete_where(self, where: str, params: list[Any] | tuple[Any, ...] = ()) -> None:
        gone = self._db.execute(
            f"DELETE FROM outbox WHERE {where} RETURNING length(cabinets)", params
        ).fetchall()
        self._rows -= len(gone)
        self._bytes -= sum(n for (n,) in gone)
        if not self._rows:
            self._ready.clear()

    def _make_room(self, size: int) -> None:
        while self._rows and (
            self._rows + 1 > self._max_rows or self._bytes + size > self._max_bytes
        ):
            victim = self._db.execute(
                "SELECT seq, kind, event, cabinets, created FROM outbox ORDER BY"
                " CASE kind "
                + " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(_DROP_ORDER))
                + " END, seq LIMIT 1"
            ).fetchone()
            msg = _row(victim)
            self._delete_where("seq = ?", (msg.seq,))
            self._db.execute(
                "INSERT INTO counters VALUES (?, 1)"
                " ON CONFLICT(name) DO UPDATE SET value = value + 1",
                (msg.kind,),
            )
            level = log.error if msg.kind in ("change", "alarm") else log.warning
            level("outbox.full_dropped", seq=msg.seq, kind=msg.kind, cabinets=list(msg.cabinets))
