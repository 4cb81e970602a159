"""The uplink against the fake cloud on loopback (which validates bodies against the spec)."""

import asyncio
import json
import time

import pytest
from pydantic import SecretStr

from agent.cloud.backoff import backoff_delay
from agent.cloud.uplink import Uplink, retry_after
from agent.storage.outbox import Outbox
from tests.agent.conftest import refuse_writes

KEY = "the-api-key"  # what the shared `cloud` fixture accepts


@pytest.fixture
async def make_uplink(cloud, outbox):
    started = []

    async def make(key=KEY, **kw):
        kw.setdefault("backoff_base_s", 0.01)
        kw.setdefault("backoff_cap_s", 0.05)
        uplink = Uplink(cloud.url, SecretStr(key), outbox, lambda: [], **kw)
        await uplink.start()
        started.append(uplink)
        return uplink

    yield make
    for uplink in started:
        await uplink.close()


def change(outbox, key, status, side="front"):
    outbox.append("change", "door_changed", [{"key": key, f"{side}_status": status}])


async def drained(outbox, timeout=5.0):
    async with asyncio.timeout(timeout):
        while outbox.pending(1):
            await asyncio.sleep(0.01)


async def test_changes_arrive_in_order_with_header_and_info(cloud, outbox, make_uplink):
    await make_uplink()
    for i, status in enumerate(["open", "closed", "open"]):
        change(outbox, 5, status)
        change(outbox, i, "closed", side="rear")
    await drained(outbox)
    assert cloud.cabinet_updates() == [
        {"key": 5, "front_status": "open"},
        {"key": 0, "rear_status": "closed"},
        {"key": 5, "front_status": "closed"},
        {"key": 1, "rear_status": "closed"},
        {"key": 5, "front_status": "open"},
        {"key": 2, "rear_status": "closed"},
    ]
    body = cloud.received[0]["body"]
    assert body["event"] == {"type": "door_changed"}
    assert set(body["locker_info"]) == {"ip", "firmware"}
    assert cloud.rejected == []


async def test_5xx_and_dropped_connections_are_retried(cloud, outbox, make_uplink):
    cloud.fail_next(500, count=2)
    cloud.drop_next(1)
    uplink = await make_uplink()
    change(outbox, 1, "open")
    change(outbox, 1, "closed")
    await drained(outbox)
    assert cloud.cabinet_updates() == [
        {"key": 1, "front_status": "open"},
        {"key": 1, "front_status": "closed"},
    ]
    assert uplink.problems() == []


async def test_cloud_down_keeps_everything_and_says_so(outbox, make_uplink):
    uplink = Uplink(
        "http://127.0.0.1:9",
        SecretStr(KEY),
        outbox,
        lambda: [],
        backoff_base_s=0.01,
        backoff_cap_s=0.02,
    )
    await uplink.start()
    try:
        change(outbox, 1, "open")
        await asyncio.sleep(0.2)
        assert len(outbox.pending(10)) == 1
        assert uplink.problems() and "unreachable" in uplink.problems()[0]
    finally:
        await uplink.close()


async def test_wrong_api_key_keeps_the_queue(cloud, outbox, make_uplink):
    uplink = await make_uplink(key="wrong", auth_retry_s=0.05)
    change(outbox, 1, "open")
    await asyncio.sleep(0.3)
    assert len(outbox.pending(10)) == 1
    assert "api-key" in uplink.problems()[0]
    assert cloud.received == []
    assert "wrong" not in uplink.problems()[0]


async def test_rejected_body_does_not_block_the_queue(cloud, outbox, make_uplink):
    cloud.fail_next(422, count=2)  # the batch, then message 1 alone
    await make_uplink()
    change(outbox, 1, "open")
    change(outbox, 2, "open")
    change(outbox, 3, "open")
    await drained(outbox)
    assert cloud.cabinet_updates() == [
        {"key": 2, "front_status": "open"},
        {"key": 3, "front_status": "open"},
    ]
    [dead] = outbox.dead()
    assert dead["status"] == 422
    assert json.loads(dead["cabinets"]) == [{"key": 1, "front_status": "open"}]
    assert "Simulated failure" in dead["answer"]


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_is_honoured(cloud, outbox, make_uplink, status):
    cloud.fail_next(status, retry_after=1)
    await make_uplink()
    started = time.monotonic()
    change(outbox, 1, "open")
    await cloud.wait_for(lambda c: c["key"] == 1, timeout=5)
    assert time.monotonic() - started >= 0.95


async def test_heartbeat_carries_the_snapshot(cloud, outbox):
    snap = [{"key": 0, "front_status": "closed"}]
    uplink = Uplink(cloud.url, SecretStr(KEY), outbox, lambda: snap, heartbeat_s=0.05)
    await uplink.start()
    try:
        body = await cloud.wait_for(lambda b: b["event"]["type"] == "active", timeout=5)
        assert body["cabinets"] == snap
    finally:
        await uplink.close()


async def test_a_heartbeat_the_disk_refused_is_written_again_within_seconds(
    cloud, outbox, monkeypatch
):
    """/healthz said "outbox cannot write" for up to a whole beat after the disk was
    freed, and the cloud missed that beat: a refused beat is tried again soon."""
    from agent.cloud import uplink as uplink_module

    monkeypatch.setattr(uplink_module, "BEAT_RETRY_S", 0.01)
    tries = refuse_writes(outbox, monkeypatch)
    snap = [{"key": 0, "front_status": "closed"}]
    uplink = Uplink(cloud.url, SecretStr(KEY), outbox, lambda: snap, heartbeat_s=2.0)
    await uplink.start()
    try:
        async with asyncio.timeout(3.9):  # a beat (2 s) on: a second try only at 4 s
            while len(tries) < 3:
                await asyncio.sleep(0.005)
        assert outbox.problems() == ["outbox cannot write: database or disk is full"]
        monkeypatch.undo()  # the disk is freed
        await cloud.wait_for(lambda b: b["event"]["type"] == "active", timeout=1.5)
        assert outbox.problems() == []
    finally:
        await uplink.close()


def test_backoff_is_full_jitter_and_capped():
    assert backoff_delay(0, 0.5, 60, lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 60, lambda: 1.0) == 4.0
    assert backoff_delay(100, 0.5, 60, lambda: 1.0) == 60
    assert backoff_delay(5, 0.5, 60, lambda: 0.0) == 0.0


def test_retry_after_parsing():
    assert retry_after("7") == 7.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    date = "Wed, 21 Oct 2015 07:27:50 GMT"  # the cloud's Date: its clock, not ours
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", date) == 10.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None  # no Date to measure from


async def test_a_cloud_that_never_answers_times_out_and_is_retried(cloud, outbox, make_uplink):
    cloud.delay = 0.5
    uplink = await make_uplink(timeout_s=0.1)
    change(outbox, 1, "open")
    async with asyncio.timeout(5):
        while not uplink.problems():
            await asyncio.sleep(0.01)
    assert "unreachable" in uplink.problems()[0]
    assert len(outbox.pending(10)) == 1  # kept: the cloud may or may not have it
    cloud.heal()
    await drained(outbox)
    # at least once: the slow answers may have been recorded too, never out of order
    assert {"key": 1, "front_status": "open"} in cloud.cabinet_updates()


async def test_a_corrected_key_after_restart_delivers_everything(cloud, tmp_path):
    path = tmp_path / "restart.sqlite3"
    box = Outbox(path)
    wrong = Uplink(cloud.url, SecretStr("old-key"), box, lambda: [], auth_retry_s=0.05)
    await wrong.start()
    for i in range(3):
        change(box, i, "open")
    await asyncio.sleep(0.2)
    await wrong.close()
    box.close()
    assert cloud.received == []

    box = Outbox(path)  # the technician fixed the key and restarted the agent
    fixed = Uplink(cloud.url, SecretStr(KEY), box, lambda: [])
    await fixed.start()
    try:
        await drained(box)
    finally:
        await fixed.close()
        box.close()
    assert [c["key"] for c in cloud.cabinet_updates()] == [0, 1, 2]


async def test_a_disk_error_does_not_end_the_uplink(cloud, outbox, make_uplink, monkeypatch):
    import sqlite3

    real = outbox.next_batch
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real()

    monkeypatch.setattr(outbox, "next_batch", flaky)
    await make_uplink()
    change(outbox, 1, "open")
    await drained(outbox)
    assert cloud.cabinet_updates() == [{"key": 1, "front_status": "open"}]


@pytest.mark.parametrize("status", [404, 405, 410, 409])
async def test_a_4xx_not_about_the_body_is_retried_not_buried(cloud, outbox, make_uplink, status):
    """A 404 during a cloud deploy must not lose the changes (and leave the cloud a
    door_forced_open_cleared without its alarm): the rows wait and go later."""
    cloud.fail_next(status, count=2)
    uplink = await make_uplink()
    change(outbox, 2, "open")
    outbox.append("alarm", "door_forced_open", [{"key": 2, "front_status": "open"}])
    change(outbox, 2, "closed")
    await drained(outbox)
    assert outbox.dead() == []
    events = [r["body"]["event"]["type"] for r in cloud.received]
    assert events[-3:] == ["door_changed", "door_forced_open", "door_changed"]
    assert uplink.problems() == []


def test_one_backoff_counts_failures_and_resets():
    from agent.cloud.backoff import Backoff

    backoff = Backoff(0.5, 60, lambda: 1.0)
    assert [backoff.next_s() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff.failures == 4
    backoff.reset()
    assert backoff.next_s() == 0.5


async def test_a_cloud_that_refuses_for_good_cannot_grow_the_dead_letters(cloud, tmp_path):
    """Finding: a cloud answering 422 for good grew the dead letters by every change
    (3,351 rows in 20 s with ``outbox_max_rows = 100``). Now they keep within the
    outbox's limits, the oldest dropped first, each counted."""
    box = Outbox(tmp_path / "outbox.sqlite3", max_rows=100)
    cloud.fail_next(422, count=10**6)
    uplink = Uplink(cloud.url, SecretStr(KEY), box, lambda: [], backoff_base_s=0.01)
    await uplink.start()
    try:
        for i in range(300):
            change(box, i % 16, "open" if i % 2 else "closed")
            await asyncio.sleep(0)
        await drained(box, timeout=30)
    finally:
        await uplink.close()
    stats = box.stats()
    assert stats["dead"] == 100
    assert stats["dead_dropped"] > 0
    # Every change is accounted for: kept aside, dropped from the dead letters, or
    # dropped while pending (the outbox itself holds 100).
    assert stats["dead"] + stats["dead_dropped"] + stats["dropped"].get("change", 0) == 300
    seqs = sorted(d["seq"] for d in box.dead(limit=1000))
    assert len(seqs) == 100 and seqs[-1] == 300  # the newest kept, the oldest dropped
    box.close()
    reopened = Outbox(tmp_path / "outbox.sqlite3", max_rows=100)  # counts survive a restart
    assert reopened.stats()["dead"] == 100
    assert reopened.stats()["dead_dropped"] == stats["dead_dropped"]
    reopened.close()


async def test_a_retried_beat_is_not_counted_as_a_beat(cloud, outbox, monkeypatch):
    """A beat the disk refused was retried, and the retry counted as a beat: with the
    cloud refusing empty lists, the one beat in RETRY_EMPTY_EVERY that asks again was
    retried as a skipped beat, and the next ask came RETRY_EMPTY_EVERY beats later."""
    from agent.cloud import uplink as uplink_module

    monkeypatch.setattr(uplink_module, "BEAT_RETRY_S", 0.01)
    monkeypatch.setattr(uplink_module, "RETRY_EMPTY_EVERY", 4)
    tries = refuse_writes(outbox, monkeypatch)
    uplink = Uplink(cloud.url, SecretStr(KEY), outbox, lambda: [], heartbeat_s=0.3)
    uplink._empty_refused = True  # as a refused empty beat leaves it (test_unknown_doors)
    await uplink.start()
    try:
        async with asyncio.timeout(3):  # the 4th beat, at 1.2 s, then retries within it
            while len(tries) < 3:
                await asyncio.sleep(0.005)
        assert tries[2] - tries[0] < 0.3  # retries, not a beat apart (let alone four)
    finally:
        await uplink.close()
