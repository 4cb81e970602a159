"""A full disk delays the record, never what the agent does about a door (ADR 0012).

Before the fix, the auto-close timers, supervision and the indicators followed the
journal's *applied* entries: while the outbox refused writes nothing was applied, so
a motorised door forced open stayed open, with no alarm and no left-open, for as long
as the disk stayed full (breakit F5).
"""

from __future__ import annotations

import asyncio

from simulator.run import Simulation
from tests.agent.conftest import refuse_writes


def news(outbox, before: int) -> list[tuple[str, list[dict]]]:
    return [(m.event, list(m.cabinets)) for m in outbox.pending(1000)[before:]]


async def until(predicate, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_a_forced_motorised_door_is_driven_shut_while_the_disk_refuses(
    touchless, motors, outbox, monkeypatch
):
    before = len(outbox.pending(1000))
    shown = len(motors.patterns.get(0, []))
    refuse_writes(outbox, monkeypatch)
    touchless.door_sensed(0, "front", True)  # forced: nobody asked
    # Acted on at once: the indicator shows the open door, the alarm is decided
    # (waiting behind the door's record), the auto-close timer runs.
    assert touchless.journal.problems() == [
        "2 changes waiting for the outbox to take them",
        "cabinet 0 front door: shown open as sensed, not yet recorded",
        "cabinet 0: door_forced_open (front door), not yet recorded",
    ]
    await until(lambda: (0, "front", "close") in motors.drives)  # timer_s 0.3
    await until(lambda: touchless.get(0).as_cloud()["state"] == "closed")
    await until(lambda: motors.patterns[0][-1] == "ready")  # shown on the next turn
    assert motors.patterns[0][shown:] == ["open", "closing", "ready"]
    assert news(outbox, before) == []  # nothing told that is not recorded
    assert "cabinet 0: door_forced_open_cleared (front door), not yet recorded" in (
        touchless.journal.problems()
    )

    monkeypatch.undo()  # space comes back: the record arrives whole, in order
    await until(lambda: touchless.journal.waiting == 0)
    assert news(outbox, before) == [
        ("door_changed", [{"key": 0, "front_status": "open"}]),
        ("door_forced_open", [{"key": 0, "front_status": "open", "rear_status": "closed"}]),
        ("door_changed", [{"key": 0, "front_status": "closed"}]),
        (
            "door_forced_open_cleared",
            [{"key": 0, "front_status": "closed", "rear_status": "closed"}],
        ),
    ]
    assert touchless.get(0).as_cloud()["alarms"] == []
    assert touchless.journal.problems() == []


async def test_a_door_left_open_is_supervised_while_the_disk_refuses(
    touchless, motors, outbox, monkeypatch
):
    before = len(outbox.pending(1000))
    refuse_writes(outbox, monkeypatch)
    touchless.door_sensed(1, "rear", True)  # a latch door, forced; left_open_s 0.5
    left = "cabinet 1: door_left_open (rear door), not yet recorded"
    await until(lambda: left in touchless.journal.problems())
    assert touchless.get(1).as_cloud()["alarms"] == []  # the API lists recorded alarms

    monkeypatch.undo()
    await until(lambda: touchless.journal.waiting == 0)
    assert [event for event, _ in news(outbox, before)] == [
        "door_changed",
        "door_forced_open",
        "door_left_open",
    ]
    alarms = {(a["type"], a["side"]) for a in touchless.get(1).as_cloud()["alarms"]}
    assert alarms == {("door_forced_open", "rear"), ("door_left_open", "rear")}


async def test_on_a_full_disk_a_forced_motorised_door_still_closes_itself(small_disk):
    """The breakit repro, inverted: the touchless simulator on a real full tmpfs."""

    def short_timer(data: dict) -> None:
        data["locker"]["timer_s"] = 2  # 8 in the embedded config

    sim = Simulation(locker="touchless", storage_dir=small_disk.path, adjust=short_timer)
    await sim.start()
    try:
        key = 2
        await sim.cloud.wait_for(lambda b: b["event"]["type"] == "startup", timeout=5)
        before = len(sim.cloud.received)
        assert small_disk.fill() > 0
        sim.touchless.push_open(key)
        cabinet = sim.agent.locker.cabinets[key]
        journal = sim.agent.locker.journal
        await until(lambda: cabinet.as_cloud()["state"] == "open", timeout=5)
        forced = f"cabinet {key}: door_forced_open (front door), not yet recorded"
        assert forced in journal.problems()  # decided at once; timer_s 2 to the close
        await until(lambda: cabinet.as_cloud()["state"] == "closed", timeout=10)
        cleared = f"cabinet {key}: door_forced_open_cleared (front door), not yet recorded"
        assert cleared in journal.problems()

        small_disk.free()
        wanted = [
            ("door_changed", "open"),
            ("door_forced_open", "open"),
            ("door_changed", "closed"),
            ("door_forced_open_cleared", "closed"),
        ]

        def heard() -> list[tuple[str, str]]:
            bodies = [r["body"] for r in sim.cloud.received[before:]]
            return [
                (body["event"]["type"], c.get("front_status"))
                for body in bodies
                for c in body["cabinets"]
                if c["key"] == key and body["event"]["type"] not in ("heartbeat", "startup")
            ]  # the startup snapshot is sent again while its ack cannot be deleted

        await until(lambda: len(heard()) >= len(wanted), timeout=15)
        assert heard() == wanted
    finally:
        await sim.close()


async def test_food_found_unsafe_lights_its_cabinet_before_the_disk_records_it():
    """Review finding: the food-unsafe light followed the recorded alarm, so while the
    disk refused it the cabinet showed "ready" over food past its time; the light is
    what tells a customer not to take it (disable_when_unsafe is off by default)."""
    from agent.locker.cabinet import Cabinet
    from agent.locker.door import Door
    from agent.locker.indicator import Indicators
    from agent.locker.journal import Journal
    from agent.locker.supervision import FOOD_TIME_EXCEEDED, AlarmChange
    from agent.storage.outbox import OutboxError

    class FullDisk:
        def append(self, *args, **kwargs):
            raise OutboxError("database or disk is full")

    cabinet = Cabinet(key=0, size="M", front=Door(sensed=False, shown=False, reported="closed"))
    journal = Journal(FullDisk(), lambda keys=None: [])
    indicators = Indicators({0: cabinet})
    journal.react(indicators.react)
    journal.observe(indicators.observe)
    shown: list[str] = []
    indicators.attach(lambda key, pattern: shown.append(pattern))
    try:
        await asyncio.sleep(0)
        journal.publish(AlarmChange(cabinet, FOOD_TIME_EXCEEDED, None, True))
        await until(lambda: shown[-1] == "food_unsafe")
        assert "food_time_exceeded" in " ".join(journal.problems())  # not yet recorded
        assert not cabinet.alarms  # the record lags; the light does not
    finally:
        journal.close()


async def test_a_disable_held_in_memory_is_saved_once_the_disk_takes_it(locker, store, monkeypatch):
    """The disk refuses a disable: it holds, /healthz names it, and it is asked again
    until saved, through any error in between (a bug once ended the retries)."""
    from agent.locker.commands import parse_command
    from agent.locker.errors import Unavailable
    from agent.storage.store import StoreError

    monkeypatch.setattr("agent.locker.dispatch.RESAVE_S", 0.01)
    save = store.save_settings
    answers = [StoreError("database or disk is full"), RuntimeError("a bug"), StoreError("full")]

    def flaky(key, **settings):
        if answers:
            raise answers.pop(0)
        save(key, **settings)

    monkeypatch.setattr(store, "save_settings", flaky)
    try:
        await locker.execute(2, parse_command({"command": "disable"}))
    except Unavailable as refused:
        assert "saved then, unasked" in str(refused)
    else:
        raise AssertionError("a disable the disk refused answered as saved")
    assert locker.get(2).as_cloud()["enabled"] is False
    assert locker.problems() == [
        "cabinet 2: disabled, but not saved (the disk refuses): a restart now would enable it"
    ]
    await until(lambda: not locker.problems())
    assert answers == [] and store.settings()[2]["enabled"] is False


async def test_an_enable_whose_intent_the_disk_refuses_does_not_act(locker, store, monkeypatch):
    """Only a disable acts with its intent held in memory: an enable (a resize, a mode)
    resent after a restart must not act twice, e.g. over a food-time disable since."""
    from agent.locker.commands import parse_command
    from agent.locker.errors import Unavailable
    from agent.storage.store import StoreError

    await locker.execute(2, parse_command({"command": "disable"}))

    def full(*_a, **_k):
        raise StoreError("database or disk is full")

    monkeypatch.setattr(store, "save_command", full)
    for body in ({"command": "enable"}, {"command": "resize", "size": "large"}):
        try:
            await locker.command(2, parse_command(body), "cloud:c-1")
        except Unavailable:
            pass
        else:
            raise AssertionError(f"{body} acted without its intent on disk")
    shown = locker.get(2).as_cloud()
    assert shown["enabled"] is False and shown["size"] != "large"
    await locker.command(2, parse_command({"command": "disable"}), "cloud:c-2")  # still holds
