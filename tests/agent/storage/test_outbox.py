"""The durable outbox: ordering, batching, bounds, dead letters, surviving a reopen."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agent.storage.outbox import Outbox


@pytest.fixture
def box(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", batch_limit=10)
    yield box
    box.close()


def change(box, key, status, side="front"):
    return box.append("change", "door_changed", [{"key": key, f"{side}_status": status}])


def test_rows_survive_a_reopen_in_order(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    for i in range(5):
        change(box, i, "open")
    in_flight = box.next_batch()
    box.close()  # the process dies before the cloud answered
    box = Outbox(tmp_path / "o.sqlite3")
    assert [m.seq for m in box.next_batch()] == [m.seq for m in in_flight]
    box.ack([m.seq for m in in_flight])
    change(box, 9, "closed")
    assert box.pending()[0].seq > in_flight[-1].seq  # seq never goes back
    box.close()


def test_a_doors_changes_never_share_a_batch(box):
    change(box, 1, "open")
    change(box, 2, "open")
    change(box, 1, "closed", side="rear")
    change(box, 1, "closed")
    batch = box.next_batch()
    assert [list(m.cabinets) for m in batch] == [
        [{"key": 1, "front_status": "open"}],
        [{"key": 2, "front_status": "open"}],
        [{"key": 1, "rear_status": "closed"}],
    ]


def test_snapshots_and_heartbeats_go_alone(box):
    box.append("snapshot", "startup", [{"key": 1, "front_status": "open"}])
    change(box, 2, "open")
    assert [m.kind for m in box.next_batch()] == ["snapshot"]
    box.ack([box.next_batch()[0].seq])
    box.append("heartbeat", "active", [])
    assert [m.kind for m in box.next_batch()] == ["change"]


def test_a_new_heartbeat_replaces_a_pending_one(box):
    box.append("heartbeat", "active", [{"key": 1, "front_status": "open"}])
    change(box, 1, "closed")
    box.append("heartbeat", "active", [{"key": 1, "front_status": "closed"}])
    assert [(m.kind, list(m.cabinets)) for m in box.pending()] == [
        ("change", [{"key": 1, "front_status": "closed"}]),
        ("heartbeat", [{"key": 1, "front_status": "closed"}]),
    ]


def test_full_outbox_drops_heartbeats_first_then_oldest_changes_counted(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_rows=3)
    box.append("snapshot", "startup", [{"key": 0, "front_status": "open"}])
    box.append("heartbeat", "active", [])
    change(box, 1, "open")
    change(box, 2, "open")  # heartbeat goes
    assert [m.kind for m in box.pending()] == ["snapshot", "change", "change"]
    change(box, 3, "open")  # then the snapshot
    change(box, 4, "open")  # then the oldest change, counted
    assert [m.cabinets[0]["key"] for m in box.pending()] == [2, 3, 4]
    assert box.stats()["dropped"] == {"heartbeat": 1, "snapshot": 1, "change": 1}
    assert box.problems()
    box.close()


def test_a_full_outbox_keeps_the_food_alarm_and_its_clearing_over_door_changes(tmp_path):
    """A day of pickups during a cloud outage: the oldest door changes go, never the
    food alarm raised at its start, nor its clearing without it."""
    box = Outbox(tmp_path / "o.sqlite3", max_rows=100)
    box.append("alarm", "food_time_exceeded", [{"key": 1, "front_status": "closed"}])
    for i in range(120):
        change(box, 2 + i % 4, "open" if i % 2 else "closed")
    box.append("alarm", "food_time_exceeded_cleared", [{"key": 1, "front_status": "closed"}])
    events = [m.event for m in box.pending(1000)]
    assert events[0] == "food_time_exceeded"
    assert events[-1] == "food_time_exceeded_cleared"
    assert events.count("door_changed") == 98
    assert box.stats()["dropped"] == {"change": 22}
    box.close()


def test_byte_cap(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_bytes=200)
    for i in range(20):
        change(box, i, "open")
    assert box.stats()["bytes"] <= 200
    assert box.pending()[-1].cabinets[0]["key"] == 19
    box.close()


def test_bury_keeps_rows_inspectable(box):
    m = change(box, 1, "open")
    box.bury([m.seq], 422, '{"message": "no"}')
    assert box.pending() == []
    [dead] = box.dead()
    assert dead["seq"] == m.seq and dead["status"] == 422
    assert box.stats()["dead"] == 1


async def test_wait_wakes_on_append(box):
    import asyncio

    waiter = asyncio.create_task(box.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    change(box, 1, "open")
    await asyncio.wait_for(waiter, 1)


def test_order_is_by_seq_not_wall_clock(box, monkeypatch):
    import agent.storage.outbox

    change(box, 1, "open")
    monkeypatch.setattr(agent.storage.outbox.time, "time", lambda: 0.0)  # the clock jumps back
    change(box, 1, "closed")
    assert [m.cabinets[0]["front_status"] for m in box.pending()] == ["open", "closed"]


DOORS = st.tuples(st.integers(0, 4), st.sampled_from(["front", "rear"]))


class OutboxMachine(RuleBasedStateMachine):
    """Random appends, deliveries, failures, rejections and crashes.

    Per door, what the cloud accepted plus what was buried is exactly what was
    appended, in order, with nothing lost and nothing merged.
    """

    @initialize()
    def open(self):
        self.dir = Path(tempfile.mkdtemp())
        self.box = Outbox(self.dir / "o.sqlite3", batch_limit=4, max_rows=10_000)
        self.appended: dict[tuple[int, str], list[int]] = {}
        self.accepted: dict[tuple[int, str], list[int]] = {}
        self.in_flight: list = []

    def teardown(self):
        self.box.close()
        shutil.rmtree(self.dir)

    @rule(door=DOORS, status=st.sampled_from(["open", "closed"]))
    def append_change(self, door, status):
        key, side = door
        msg = self.box.append("change", "door_changed", [{"key": key, f"{side}_status": status}])
        self.appended.setdefault(door, []).append(msg.seq)

    @rule()
    def heartbeat(self):
        self.box.append("heartbeat", "active", [])

    @rule()
    def take_batch(self):
        batch = self.box.next_batch()
        pending = self.box.pending(len(batch))
        assert [m.seq for m in batch] == [m.seq for m in pending]  # a prefix, in order
        assert len(batch) <= 4
        doors = [d for m in batch for d in m.doors()]
        assert len(doors) == len(set(doors))
        assert len(batch) <= 1 or all(m.kind == "change" for m in batch)
        self.in_flight = batch

    def _settle(self, batch):
        for m in batch:
            for door in m.doors():
                self.accepted.setdefault(door, []).append(m.seq)

    @rule()
    def cloud_accepts(self):
        self.box.ack([m.seq for m in self.in_flight])
        self._settle(self.in_flight)
        self.in_flight = []

    @rule()
    def cloud_rejects(self):
        self.box.bury([m.seq for m in self.in_flight], 422, "no")
        self._settle(self.in_flight)
        self.in_flight = []

    @rule()
    def crash(self):
        self.box.close()
        self.box = Outbox(self.dir / "o.sqlite3", batch_limit=4, max_rows=10_000)
        self.in_flight = []

    @invariant()
    def nothing_lost_nothing_reordered(self):
        pending = {}
        for m in self.box.pending(100_000):
            for door in m.doors():
                pending.setdefault(door, []).append(m.seq)
        for door, seqs in self.appended.items():
            assert self.accepted.get(door, []) + pending.get(door, []) == seqs


OutboxMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
test_outbox_machine = OutboxMachine.TestCase


def test_stats_shape(box):
    change(box, 1, "open")
    stats = box.stats()
    assert stats["pending"] == 1 and stats["bytes"] > 0 and stats["oldest_age_s"] >= 0
    assert json.dumps(stats)


def test_ages_kept_in_memory_stay_bounded_by_what_is_pending(tmp_path):
    """The monotonic ages of appended rows are pruned as rows go, even if nobody asks
    for stats (a long run with no /healthz must not grow memory)."""
    box = Outbox(tmp_path / "o.sqlite3")
    for i in range(500):
        change(box, i % 8, "open" if i % 2 else "closed")
        box.ack([m.seq for m in box.pending(10)])
    assert len(box._ages) <= 1
    change(box, 1, "open")
    assert box.stats()["pending"] == 1 and box.stats()["oldest_age_s"] >= 0
    box.close()


def test_an_outbox_from_before_event_details_is_given_the_column(tmp_path):
    """A file written by the previous version (no ``detail`` column) keeps its queue."""
    import sqlite3

    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
        " event TEXT NOT NULL, cabinets TEXT NOT NULL, created REAL NOT NULL);"
        "CREATE TABLE dead (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, event TEXT NOT NULL,"
        " cabinets TEXT NOT NULL, created REAL NOT NULL, died REAL NOT NULL,"
        " status INTEGER NOT NULL, answer TEXT NOT NULL);"
        "INSERT INTO outbox (kind, event, cabinets, created)"
        """ VALUES ('change', 'door_changed', '[{"key":1,"front_status":"open"}]', 0);"""
    )
    db.commit()
    db.close()
    box = Outbox(path)
    box.append("alarm", "board_offline", [{"key": 1, "front_status": "open"}], {"bus": "b"})
    assert [(m.event, m.detail) for m in box.pending()] == [
        ("door_changed", None),
        ("board_offline", {"bus": "b"}),
    ]
    box.close()
