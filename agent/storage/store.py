"""What the agent remembers across restarts, besides the outbox.

- Cabinet settings changed by commands (enabled, size, thermal mode): a cabinet
  a technician disabled stays disabled after a power cut. A setting changed by a
  command wins over the config file's default.
- Command results by id: a command retried after a restart returns its first
  answer instead of pulsing the lock again. Results are forgotten by count
  (``max_commands``), never by age: a Pi steps its wall clock at the first NTP
  sync, and a result that expired by a clock step would let a resent id act twice.

One SQLite file under ``[storage] dir`` (WAL, ``synchronous=FULL``), written
before the change is shown.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from agent.storage.sqlite import Database, OnFile

STATE_FILE = "state.sqlite3"
Outcome = Literal["ok", "failed", "running"]
# commands.status: 200 an answer, -1 began and never finished, anything else an error
_OUTCOMES: dict[int, Outcome] = {200: "ok", 0: "failed", -1: "running"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS cabinet_settings (
    key          INTEGER PRIMARY KEY,
    enabled      INTEGER NOT NULL,
    size         TEXT    NOT NULL,
    thermal_mode TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    at          REAL NOT NULL,
    status      INTEGER NOT NULL,
    answer      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_at ON commands (at);
"""


class StoreError(Exception):
    """The state store could not read or write (disk full, I/O error, damaged file)."""


class StateStore(OnFile):
    """Cabinet settings and command results in ``path`` (SQLite); every method may
    raise ``StoreError``."""

    def __init__(self, path: str | Path, *, max_commands: int = 10_000) -> None:
        self.path = Path(path)
        # A damaged file is set aside and replaced (settings fall back to the config,
        # remembered results are lost: said loudly); see ``agent.storage.sqlite``.
        self._file = Database(self.path, SCHEMA)
        self._max_commands = max_commands

    @contextlib.contextmanager
    def _errors(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._file.db
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._file.replace_if_damaged(exc)
            raise StoreError(f"state store: {exc}") from exc

    def settings(self) -> dict[int, dict[str, Any]]:
        """Saved settings by cabinet key: ``enabled``, ``size``, ``thermal_mode``."""
        with self._errors() as db:
            rows = db.execute(
                "SELECT key, enabled, size, thermal_mode FROM cabinet_settings"
            ).fetchall()
        return {
            key: {"enabled": bool(enabled), "size": size, "thermal_mode": thermal}
            for key, enabled, size, thermal in rows
        }

    def save_settings(self, key: int, *, enabled: bool, size: str, thermal_mode: str) -> None:
        """Keep one cabinet's settings (committed before this returns)."""
        with self._errors() as db:
            db.execute(
                "INSERT OR REPLACE INTO cabinet_settings VALUES (?, ?, ?, ?)",
                (key, int(enabled), size, thermal_mode),
            )

    def command(self, command_id: str) -> tuple[str, float, Outcome, dict[str, Any]] | None:
        """(fingerprint, wall time, outcome, answer or error) of a command, or None.
        ``running``: it began and never finished (the process died while it ran)."""
        with self._errors() as db:
            row = db.execute(
                "SELECT fingerprint, at, status, answer FROM commands WHERE id = ?", (command_id,)
            ).fetchone()
        if row is None:
            return None
        fingerprint, at, status, answer = row
        outcome = _OUTCOMES.get(status, "failed")
        return fingerprint, at, outcome, json.loads(answer)

    def save_command(
        self,
        command_id: str,
        fingerprint: str,
        at: float,
        outcome: Outcome,
        answer: dict[str, Any],
    ) -> None:
        """Keep a command's outcome: ``running`` before it acts, then ``ok`` (the answer)
        or ``failed`` (the error)."""
        status = next(code for code, name in _OUTCOMES.items() if name == outcome)
        with self._errors() as db:
            db.execute(
                "INSERT OR REPLACE INTO commands VALUES (?, ?, ?, ?, ?)",
                (command_id, fingerprint, at, status, json.dumps(answer)),
            )

    def forget_command(self, command_id: str) -> None:
        """Drop a command's record (it did not act: a retry may)."""
        with self._errors() as db:
            db.execute("DELETE FROM commands WHERE id = ?", (command_id,))

    def trim_commands(self) -> None:
        """Keep the newest ``max_commands`` results (by insertion, never by a clock)."""
        with self._errors() as db:
            db.execute(
                "DELETE FROM commands WHERE rowid IN (SELECT rowid FROM commands"
                " ORDER BY rowid DESC LIMIT -1 OFFSET ?)",
                (self._max_commands,),
            )
