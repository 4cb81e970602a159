"""The journal: reactors act on an entry at once, the record follows in order (ADR 0012)."""

from __future__ import annotations

import asyncio
import sqlite3

from agent.locker.journal import BoardSeen, Journal, StorageNotice
from agent.storage.outbox import Outbox


async def test_reactors_act_at_once_and_the_record_follows_in_order(tmp_path, monkeypatch):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    journal = Journal(
        outbox, lambda keys=None: [{"key": 0, "front_status": "closed"}], retry_s=0.01
    )
    reacted: list[object] = []
    recorded: list[object] = []

    def reactor(entry):
        reacted.append(entry)
        if isinstance(entry, BoardSeen) and not entry.online:
            return [StorageNotice(f"after board {entry.board}")]  # a follow-up
        return None

    journal.react(reactor)
    journal.observe(recorded.append)

    def full(*_a, **_k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(outbox, "_make_room", full)
    off, on = BoardSeen("rs485", 1, False), BoardSeen("rs485", 2, True)
    journal.publish(off, on)
    # Reacted to at once, each follow-up right behind its entry; nothing recorded.
    assert reacted == [off, StorageNotice("after board 1"), on]
    assert recorded == [] and journal.waiting == 3 and outbox.pending(10) == []

    monkeypatch.undo()  # space comes back: recorded and observed in the same order
    async with asyncio.timeout(3):
        while journal.waiting:
            await asyncio.sleep(0.005)
    assert recorded == reacted
    events = [m.event for m in outbox.pending(10)]
    assert events == ["board_offline", "storage_replaced", "board_online"]
    journal.close()
    outbox.close()
