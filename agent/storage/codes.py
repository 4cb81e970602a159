"""Pickup codes on disk: their SHA-256 hashes, cabinet, side, order, expiry and state.

One SQLite file under ``[storage] dir`` (``codes.sqlite3``, WAL, ``synchronous=FULL``;
a damaged file is set aside and its readable rows kept, as for the other stores).
Only hashes are kept: a stolen SD card gives no code that opens a door. Each row
is ``held`` (it may open), ``opening`` (written before the pulse: a power cut after
it never opens the door a second time), ``spent`` or ``superseded`` (kept until
expiry, so a second scan is told why and does not count as a wrong code).

The ``clock`` row keeps the newest wall time seen while the clock was known to be
right: expiry is never judged earlier than it (ADR 0017).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.storage.sqlite import Database, OnFile
from agent.storage.store import StoreError

CODES_FILE = "codes.sqlite3"
State = Literal["held", "opening", "spent", "superseded"]
STATES: tuple[State, ...] = ("held", "opening", "spent", "superseded")

SCHEMA = """
CREATE TABLE IF NOT EXISTS codes (
    sha256     TEXT PRIMARY KEY,
    key        INTEGER NOT NULL,
    rear       INTEGER NOT NULL,
    order_id   TEXT NOT NULL,
    expires_at REAL NOT NULL,
    state      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clock (
    id      INTEGER PRIMARY KEY,
    trusted REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredCode:
    """One row: ``sha256`` lower-case hex, ``expires_at`` unix seconds (the cloud's time),
    ``order_id`` as the cloud sent it (an integer or a string)."""

    sha256: str
    key: int
    rear: bool
    order_id: int | str
    expires_at: float
    state: State = "held"


class CodeStore(OnFile):
    """The codes in ``path``; every method may raise ``StoreError`` (disk full, I/O).
    ``on_replaced(notice)``: a damaged file was set aside while running."""

    def __init__(self, path: str | Path, on_replaced: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self._file = Database(self.path, SCHEMA, on_replaced)  # a damaged file, said

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._file.replace_if_damaged(exc)
            raise StoreError(f"code store: {exc}") from exc

    def rows(self) -> list[StoredCode]:
        """Every row, oldest put first; rows a damaged file garbled are skipped."""
        with self._errors():
            found = self._file.read(
                "SELECT sha256, key, rear, order_id, expires_at, state FROM codes ORDER BY rowid"
            )
        out = []
        for sha, key, rear, order, expires, state in found:
            try:
                order_id = json.loads(order)
            except (TypeError, ValueError):
                continue
            if state in STATES and isinstance(order_id, int | str):
                out.append(StoredCode(sha, key, bool(rear), order_id, float(expires), state))
        return out

    def put(
        self, codes: Iterable[StoredCode], drop: Iterable[str], supersede: Iterable[str]
    ) -> None:
        """In one transaction: ``drop`` hashes removed, ``supersede`` hashes marked
        superseded, ``codes`` written (a hash put again is replaced)."""
        db = self._file.db

        def work() -> None:
            db.executemany("DELETE FROM codes WHERE sha256 = ?", [(h,) for h in drop])
            db.executemany(
                "UPDATE codes SET state = 'superseded' WHERE sha256 = ?", [(h,) for h in supersede]
            )
            for code in codes:  # replaced: a new rowid, so the newest put is last
                db.execute("DELETE FROM codes WHERE sha256 = ?", (code.sha256,))
                db.execute(
                    "INSERT INTO codes VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        code.sha256,
                        code.key,
                        int(code.rear),
                        json.dumps(code.order_id),
                        code.expires_at,
                        code.state,
                    ),
                )

        with self._errors():
            self._file.transaction(work)

    def set_state(self, sha256: str, state: State) -> None:
        """Change one code's state (committed before this returns)."""
        with self._errors():
            self._file.transaction(
                lambda: self._file.db.execute(
                    "UPDATE codes SET state = ? WHERE sha256 = ?", (state, sha256)
                )
            )

    def prune(self, hashes: Iterable[str]) -> None:
        """Forget these codes (expired)."""
        with self._errors():
            self._file.transaction(
                lambda: self._file.db.executemany(
                    "DELETE FROM codes WHERE sha256 = ?", [(h,) for h in hashes]
                )
            )

    def trusted(self) -> float:
        """The newest wall time (unix seconds) seen while the clock was known right; 0."""
        with self._errors():
            found = self._file.read("SELECT trusted FROM clock WHERE id = 0")
        return float(found[0][0]) if found else 0.0

    def set_trusted(self, at: float) -> None:
        """Keep ``at`` as the newest wall time seen while the clock was known right."""
        with self._errors():
            self._file.transaction(
                lambda: self._file.db.execute("INSERT OR REPLACE INTO clock VALUES (0, ?)", (at,))
            )
