"""Damaged SD cards and unwritable directories: the stores set a damaged file aside,
start afresh and say so; the locker keeps polling and opening."""

import asyncio
import os
import sqlite3

import aiohttp
import pytest

from agent.storage.outbox import OUTBOX_FILE, Outbox
from agent.storage.store import STATE_FILE, StateStore
from simulator.run import Simulation


def fill(box: Outbox, n: int) -> None:
    for i in range(n):
        box.append("change", "door_changed", [{"key": i % 16, "front_status": "open"}])


def random_bytes(path):
    path.write_bytes(os.urandom(8192))


def truncated_half(path):
    box = Outbox(path)
    fill(box, 2000)
    box.close()
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)


@pytest.mark.parametrize("damage", [random_bytes, truncated_half], ids=["random", "truncated"])
def test_a_damaged_outbox_is_set_aside_and_replaced(tmp_path, damage):
    path = tmp_path / OUTBOX_FILE
    damage(path)
    box = Outbox(path)
    assert box.notice is not None and "set aside" in box.notice
    [aside] = [p for p in tmp_path.iterdir() if ".damaged-" in p.name and p.name.endswith(("Z",))]
    assert aside.stat().st_size > 0  # kept for a person to look at
    fill(box, 3)  # and the fresh one works
    assert len(box.pending()) == 3
    assert box.problems() == []  # a notice, not a lasting fault
    box.close()


@pytest.mark.parametrize("damage", [random_bytes, truncated_half], ids=["random", "truncated"])
def test_a_damaged_state_store_is_set_aside_and_replaced(tmp_path, damage):
    path = tmp_path / STATE_FILE
    damage(path)
    store = StateStore(path)
    assert store.notice is not None and "set aside" in store.notice
    store.save_settings(1, enabled=False, size="large", thermal_mode="ambient")
    assert store.settings()[1]["enabled"] is False
    store.close()


def test_an_outbox_damaged_while_running_is_replaced_and_tells(tmp_path):
    path = tmp_path / OUTBOX_FILE
    told = []
    box = Outbox(path, on_replaced=told.append)
    fill(box, 500)
    # The card goes bad under the running agent: every page after the header is noise,
    # and the pages are no longer in SQLite's cache.
    box._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    box._db.execute("PRAGMA shrink_memory")
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(path.stat().st_size - 4096))
    assert box.pending() == []  # noticed on the next read: set aside, started afresh
    assert told and "set aside" in told[0]
    box.append("change", "door_changed", [{"key": 1, "front_status": "closed"}])
    assert [list(m.cabinets) for m in box.pending()] == [[{"key": 1, "front_status": "closed"}]]
    assert box.stats()["pending"] == 1
    box.close()


def test_a_row_that_is_not_json_is_buried_not_a_plug(tmp_path):
    path = tmp_path / OUTBOX_FILE
    box = Outbox(path)
    fill(box, 3)
    db = sqlite3.connect(path)
    db.execute("UPDATE outbox SET cabinets = '{not json' WHERE seq = 2")
    db.commit()
    db.close()
    assert [m.seq for m in box.pending()] == [1, 3]
    assert [d["seq"] for d in box.dead()] == [2]
    assert box.stats()["pending"] == 2
    box.close()


def test_no_writable_place_keeps_the_locker_working_in_memory(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the storage directory should be")
    path = blocker / OUTBOX_FILE
    box = Outbox(path)
    fill(box, 2)
    assert len(box.pending()) == 2
    [problem] = box.problems()
    assert str(path) in problem and "nothing survives a restart" in problem
    box.close()


async def test_the_agent_starts_on_damaged_stores_and_says_so(tmp_path):
    random_bytes(tmp_path / OUTBOX_FILE)
    truncated_half(tmp_path / STATE_FILE)
    sim = Simulation(storage_dir=tmp_path)
    await sim.start()
    try:
        await sim.cloud.wait_for(lambda b: b["event"]["type"] == "storage_replaced", timeout=5)
        headers = {"Authorization": f"Bearer {sim.token}"}
        async with aiohttp.ClientSession(base_url=sim.api_url, headers=headers) as http:
            async with http.get("/healthz") as resp:
                health = await resp.json()
            assert resp.status == 200, health
            assert len(health["notices"]) == 2
            assert all("set aside" in n for n in health["notices"])
            async with http.put("/api/lockers/cabinets/5", json={"command": "open"}) as resp:
                assert resp.status == 200  # polling and opening as ever
        await sim.cloud.wait_for(lambda c: c == {"key": 5, "front_status": "open"}, timeout=5)
    finally:
        await sim.close()
        await asyncio.sleep(0)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs that a test can fill and free (needs root; skipped elsewhere)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(disk):
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


async def test_a_full_disk_shows_what_is_sensed_marked_and_loses_nothing(small_disk, monkeypatch):
    """The real thing: a filesystem that fills. The API shows what the switch says,
    marked as not yet recorded; a setting that cannot be saved is refused (503), not a
    500; once space is back, the cloud hears every change in order."""
    from agent.locker.cabinet import Cabinet
    from agent.locker.commands import error_body, parse_command
    from agent.locker.errors import Unavailable
    from agent.locker.locker import Locker

    outbox = Outbox(small_disk / OUTBOX_FILE)
    store = StateStore(small_disk / STATE_FILE)
    locker = Locker([Cabinet(k, "mini") for k in range(3)], outbox, store)
    for key in range(3):
        locker.door_sensed(key, "front", False)
    locker.report_startup()
    locker.journal._retry_s = 0.05
    monkeypatch.setattr("agent.locker.dispatch.RESAVE_S", 0.05)
    filler = fill_up(small_disk)
    for status in (True, False, True):
        locker.door_sensed(1, "front", status)
    shown = locker.get(1).as_cloud()
    assert (shown["state"], shown["recorded"]) == ("open", False)  # the truth, and its doubt
    assert locker.journal.waiting >= 1 and outbox.problems()
    with pytest.raises(Unavailable) as refused:
        await locker.execute(2, parse_command({"command": "resize", "size": "large"}))
    assert error_body(refused.value)[0] == 503
    assert locker.get(2).as_cloud()["size"] != "large"  # refused: not shown as set
    with pytest.raises(Unavailable, match="disabled, but not saved"):
        await locker.execute(2, parse_command({"command": "disable"}))
    assert locker.get(2).as_cloud()["enabled"] is False  # the safe way holds at once
    assert locker.problems() == [  # and /healthz says what a restart would undo
        "cabinet 2: disabled, but not saved (the disk refuses): a restart now would enable it"
    ]
    filler.unlink()  # space comes back
    async with asyncio.timeout(5):
        while locker.journal.waiting or locker.problems():  # both retried, unasked
            await asyncio.sleep(0.02)
    assert store.settings()[2]["enabled"] is False  # a restart keeps it now
    changes = [m.cabinets[0]["front_status"] for m in outbox.pending(100) if m.kind == "change"]
    assert changes == ["open", "closed", "open"]
    shown = locker.get(1).as_cloud()
    assert (shown["state"], shown["recorded"]) == ("open", True)
    await locker.execute(2, parse_command({"command": "disable"}))
    assert locker.get(2).as_cloud()["enabled"] is False
    await locker.close()
    outbox.close()
    store.close()


def test_a_flipped_byte_in_the_schema_is_damage_too(tmp_path):
    """Not UTF-8 where SQLite keeps the schema: set aside and replaced, never a crash
    loop (found by a hostile tester: one byte stopped every start)."""
    path = tmp_path / STATE_FILE
    store = StateStore(path)
    store.save_settings(1, enabled=False, size="large", thermal_mode="ambient")
    store._file.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    raw = bytearray(path.read_bytes())
    raw[raw.find(b"CREATE TABLE") + 3] = 0x84
    path.write_bytes(bytes(raw))
    store = StateStore(path)
    assert store.notice is not None and "set aside" in store.notice
    assert store.settings() == {}
    store.close()
