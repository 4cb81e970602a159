"""What the chaos soak (bench/soak.py) found in the agent, each as a minimal reproduction.

Every test here states the behaviour the agent has since the fix (a small WAL given
back after each checkpoint: ``agent/storage/sqlite.py``; an intent the disk refuses stops
the command: ``agent/locker/idempotency.py``), and failed before it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.locker.errors import LockerError
from agent.locker.idempotency import CommandLog
from agent.storage.outbox import Outbox
from agent.storage.store import StateStore

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs (root only): a small data partition, an SD card nearly full."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, check=False)


def test_an_outbox_that_is_kept_empty_never_runs_out_of_disk(small_disk: Path):
    """3.5 MiB free and every message acknowledged at once: the outbox holds nothing,
    yet after about 300 messages its WAL file (about 3.6 MB of frames already
    checkpointable) has taken the whole disk, and every later write fails with
    "database or disk is full". The agent then shows no change any more (the
    journal keeps them) and the cloud hears nothing, until a clean stop; a
    SIGKILL or a power cut keeps the WAL, so a restart is wedged too. In the
    soak (4 MiB, the outbox and the state store on it) it happened within two
    minutes, with no filler file at all once it had started.

    What passes this test (tried, not committed): ``PRAGMA wal_autocheckpoint=100``
    on every connection, so the WAL never outgrows a few hundred KB. A
    ``wal_checkpoint(TRUNCATE)`` on SQLITE_FULL alone does not: the checkpoint
    must grow the main file, and the WAL has taken the last byte.
    """
    (small_disk / "other-files.bin").write_bytes(b"\0" * (MIB // 2))
    box = Outbox(small_disk / "outbox.sqlite3")
    try:
        for n in range(2000):
            status = "open" if n % 2 else "closed"
            box.append("change", "door_changed", [{"key": n % 8, "front_status": status}])
            box.ack([m.seq for m in box.pending(10)])
        assert box.problems() == []
    finally:
        box.close()


class _FullDisk:
    """A SQLite connection on a full disk: reads work, every write fails as SQLite
    says it then ("database or disk is full")."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, *args: Any) -> Any:
        """Reads go through; anything that would write fails."""
        if sql.lstrip().split()[0].upper() in ("SELECT", "PRAGMA"):
            return self._db.execute(sql, *args)
        raise sqlite3.OperationalError("database or disk is full")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


async def test_a_result_the_full_disk_refused_is_not_acted_again_after_a_restart(tmp_path):
    """LESSONS.md: "an action that ran is never run again because its result could
    not be saved". The command ran while the disk was full (its answer was given,
    the result kept in memory only); the agent was killed later; the cloud sends
    the id again (it never got the answer, or resends by policy). The soak saw
    it: ``known open point: acted again after an answer whose result could not
    be saved (disk full) and a kill``. Same family as the known open point (a
    kill between a pulse and the saving of its result); an intent recorded
    before acting closes it only if an intent the disk refuses stops the action
    (then the first sending may answer UNAVAILABLE: at most one action in all).
    """
    path = tmp_path / "state.sqlite3"
    pulses: list[int] = []

    async def open_cabinet_3() -> dict[str, Any]:
        pulses.append(3)
        return {"key": 3, "state": "open"}

    async def send(log: CommandLog) -> None:
        # An answer like UNAVAILABLE is fine here; acting twice is not.
        with contextlib.suppress(LockerError):
            await log.run("cloud:'c-1'", open_cabinet_3, "3:open")

    store = StateStore(path)
    store._file.db = _FullDisk(store._file.db)  # type: ignore[assignment]
    await send(CommandLog(store))
    # SIGKILL: the process and its memory are gone; the disk has room again.
    restarted = StateStore(path)
    try:
        await send(CommandLog(restarted))
    finally:
        restarted.close()
    assert len(pulses) <= 1
