"""Motorised doors, supervision alarms and indicators, against a fake actuator."""

import asyncio
import itertools
import time

import pytest

from agent.locker.commands import error_body, parse_command
from agent.locker.errors import LockerError


def events(outbox):
    return [m.event for m in outbox.pending(1000)]


def alarms(locker, key):
    return [(a["type"], a["side"]) for a in locker.get(key).as_cloud()["alarms"]]


async def until(predicate, timeout=3.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_motorised_open_then_auto_close(touchless, motors, outbox):
    seen = []
    task = asyncio.create_task(touchless.execute(0, parse_command({"command": "open"})))
    await until(lambda: touchless.get(0).front.motion == "opening")
    seen.append(touchless.get(0).as_cloud()["state"])
    cabinet = await task
    assert seen == ["opening"]
    assert cabinet.as_cloud()["state"] == "open"
    await asyncio.sleep(0)  # indicators refresh on the next turn of the loop
    assert motors.patterns[0][-2:] == ["about_to_open", "open"]
    # timer_s later it closes by itself
    await until(lambda: touchless.get(0).as_cloud()["state"] == "closed")
    assert motors.drives == [(0, "front", "open"), (0, "front", "close")]
    assert "closing" in motors.patterns[0]
    await until(lambda: motors.patterns[0][-1] == "ready")
    changes = [list(m.cabinets) for m in outbox.pending(100) if m.kind == "change"]
    assert changes == [[{"key": 0, "front_status": "open"}], [{"key": 0, "front_status": "closed"}]]


async def test_close_with_delay_waits(touchless, motors):
    await touchless.execute(0, parse_command({"command": "open"}))
    started = time.monotonic()
    cabinet = await touchless.execute(0, parse_command({"command": "close", "delay": 1}))
    assert cabinet.as_cloud()["state"] == "open"  # answered at once, closes later
    await until(lambda: touchless.get(0).as_cloud()["state"] == "closed", timeout=5)
    assert time.monotonic() - started >= 0.95
    assert motors.drives.count((0, "front", "close")) == 1


async def test_open_cancels_a_pending_close(touchless, motors):
    await touchless.execute(0, parse_command({"command": "open"}))
    await touchless.execute(0, parse_command({"command": "close", "delay": 1}))
    await touchless.execute(0, parse_command({"command": "open"}))  # already open: restarts timer
    await asyncio.sleep(0.15)
    assert (0, "front", "close") not in motors.drives


async def test_close_now(touchless, motors):
    await touchless.execute(1, parse_command({"command": "open"}))
    cabinet = await touchless.execute(1, parse_command({"command": "close"}))
    assert cabinet.as_cloud()["state"] == "closed"


async def test_obstruction_while_closing_reopens_and_alarms(touchless, motors, outbox):
    await touchless.execute(0, parse_command({"command": "open"}))
    motors.obstructed.add((0, "front"))
    await until(lambda: ("door_obstructed", "front") in alarms(touchless, 0))
    await until(lambda: motors.drives[-1] == (0, "front", "open"))  # a hand in the way wins
    assert motors.drives[:3] == [(0, "front", "open"), (0, "front", "close"), (0, "front", "open")]
    motors.obstructed.clear()
    await until(lambda: touchless.get(0).as_cloud()["state"] == "closed")
    assert alarms(touchless, 0) == []
    assert "door_obstructed" in events(outbox)
    assert "door_obstructed_cleared" in events(outbox)


async def test_obstruction_while_opening_backs_off(touchless, motors):
    motors.obstructed.add((1, "front"))
    with pytest.raises(LockerError) as err:
        await touchless.execute(1, parse_command({"command": "open"}))
    assert error_body(err.value)[0] == 409 and error_body(err.value)[1]["type"] == "DOOR_OBSTRUCTED"
    assert motors.drives == [(1, "front", "open"), (1, "front", "close")]
    assert ("door_obstructed", "front") in alarms(touchless, 1)


async def test_forced_open_alarm_clears_when_shut(locker, actuator, outbox):
    locker.door_sensed(2, "front", True)  # nobody asked
    assert alarms(locker, 2) == [("door_forced_open", "front")]
    [alarm] = [m for m in outbox.pending(100) if m.event == "door_forced_open"]
    assert list(alarm.cabinets) == [{"key": 2, "front_status": "open"}]
    locker.door_sensed(2, "front", False)
    assert alarms(locker, 2) == []
    assert events(outbox)[-2:] == ["door_changed", "door_forced_open_cleared"]


async def test_commanded_open_is_not_forced(locker, actuator):
    await locker.execute(2, parse_command({"command": "open"}))
    assert alarms(locker, 2) == []


async def test_left_open_alarm(touchless, motors, outbox):
    await touchless.execute(0, parse_command({"command": "open", "rearload": True}))
    await until(lambda: ("door_left_open", "rear") in alarms(touchless, 0))
    touchless.door_sensed(0, "rear", False)
    assert alarms(touchless, 0) == []
    assert "door_left_open_cleared" in events(outbox)


async def test_jam_retries_once_then_alarms_and_clears(locker, actuator, outbox):
    actuator.jammed.add((3, "front"))
    with pytest.raises(LockerError):
        await locker.execute(3, parse_command({"command": "open"}))
    assert actuator.pulses == [(3, "front"), (3, "front")]
    assert alarms(locker, 3) == [("lock_jammed", "front")]
    actuator.jammed.clear()
    await locker.execute(3, parse_command({"command": "open"}))
    assert alarms(locker, 3) == []
    assert events(outbox)[-3:] == ["lock_jammed", "door_changed", "lock_jammed_cleared"]


async def test_rear_opened_while_front_open(touchless, motors):
    await touchless.execute(0, parse_command({"command": "open"}))
    await touchless.execute(0, parse_command({"command": "open", "rearload": True}))
    assert ("rear_opened_while_front_open", "rear") in alarms(touchless, 0)
    touchless.door_sensed(0, "rear", False)
    assert ("rear_opened_while_front_open", "rear") not in alarms(touchless, 0)


async def test_board_offline_and_back_are_events(locker, outbox):
    locker.health.min_interval_s = 0.05
    locker.health._settle_s = 0.01
    locker.board_health("rs485", 1, False)
    await asyncio.sleep(0.08)
    locker.board_health("rs485", 1, True)
    assert events(outbox)[-2:] == ["board_offline", "board_online"]


async def test_a_flapping_board_does_not_flood_the_cloud(locker, outbox):
    """Two answers, two misses, for a while: the first change at once, then at most
    one event per interval, ending on the state the board is in."""
    locker.health.min_interval_s = 0.2
    locker.health._settle_s = 0.01
    for _ in range(40):  # 0.4 s of flapping: 80 changes
        locker.board_health("rs485", 1, False)
        locker.board_health("rs485", 1, True)
        await asyncio.sleep(0.01)
    locker.board_health("rs485", 1, False)
    await asyncio.sleep(0.45)  # two more intervals: the last state is told
    health = [e for e in events(outbox) if e.startswith("board_")]
    assert 1 <= len(health) <= 5  # one per 0.2 s at most, not 81
    assert health[-1] == "board_offline"
    assert all(a != b for a, b in itertools.pairwise(health))  # never twice


async def test_a_silent_bus_is_one_event_not_one_per_board(locker, outbox):
    locker.health.min_interval_s = 0
    locker.health._settle_s = 0.05
    for board in (0, 1, 2):
        locker.board_health("rs485", board, False)
    locker.bus_health("rs485", False)
    locker.bus_health("rs485", True)  # board 0 answers again, then 1; 2 stays silent
    locker.board_health("rs485", 0, True)
    locker.board_health("rs485", 1, True)
    await asyncio.sleep(0.1)
    health = [e for e in events(outbox) if e.startswith(("board_", "bus_"))]
    assert health == ["bus_offline", "bus_online", "board_offline"]  # board 2, once


async def test_indicator_patterns(touchless, motors):
    async def shown(key):
        await asyncio.sleep(0)  # indicators refresh on the next turn of the loop
        return motors.patterns[key][-1]

    assert await shown(0) == "ready"
    touchless.set_link("cloud_unreachable")
    assert await shown(0) == "cloud_unreachable"
    touchless.set_link("no_internet")
    assert await shown(1) == "no_internet"
    await touchless.execute(1, parse_command({"command": "disable"}))
    assert await shown(1) == "disabled"
    touchless.set_link("ok")
    assert await shown(0) == "ready"
    assert await shown(1) == "disabled"


async def test_open_all(locker, actuator):
    await locker.execute(4, parse_command({"command": "disable"}))
    results = await locker.open_all()
    assert [key for key, _ in results] == [0, 1, 2, 3, 5]
    assert all(cabinet.as_cloud()["state"] == "open" for _, cabinet in results)
    assert sorted(actuator.pulses) == [(k, "front") for k in (0, 1, 2, 3, 5)]


async def test_doors_found_open_at_start_are_supervised_and_closed(open_at_start, outbox):
    locker, motors = open_at_start
    # cabinet 0's motorised front door was open when the agent started: it closes
    await until(lambda: locker.get(0).as_cloud()["state"] == "closed")
    assert motors.drives == [(0, "front", "close")]
    # cabinet 1's rear latch door was open too: left open raises the alarm
    await until(lambda: ("door_left_open", "rear") in alarms(locker, 1))
    assert ("door_forced_open", "rear") not in alarms(locker, 1)  # we cannot know


async def test_an_alarm_does_not_stick_across_a_silent_board(locker, outbox):
    locker.door_sensed(2, "front", True)  # forced
    locker.door_sensed(2, "front", None)  # the board goes silent
    locker.door_sensed(2, "front", False)  # it answers: shut meanwhile
    assert alarms(locker, 2) == []
    locker.door_sensed(2, "front", None)
    locker.door_sensed(2, "front", True)  # opened while nobody could see
    assert alarms(locker, 2) == [("door_forced_open", "front")]


async def test_a_board_silent_at_boot_is_reported_once_started(outbox, store):
    from agent.locker.cabinet import Cabinet
    from agent.locker.locker import Locker

    locker = Locker([Cabinet(0, "mini"), Cabinet(1, "mini")], outbox, store)
    locker.door_sensed(0, "front", False)
    locker.board_health("rs485", 1, False)  # cabinet 1's board never answered
    locker.report_startup()
    [event] = [m for m in outbox.pending(10) if m.event == "board_offline"]
    # an event needs a cabinet entry: it carries what is known of the locker
    assert list(event.cabinets) == [{"key": 0, "front_status": "closed"}]


async def test_a_delayed_close_is_not_replaced_by_the_timer(touchless, motors):
    opening = asyncio.create_task(touchless.execute(0, parse_command({"command": "open"})))
    await asyncio.sleep(0)
    await touchless.execute(0, parse_command({"command": "close", "delay": 1}))
    await opening
    await asyncio.sleep(0.6)  # past timer_s (0.3): the explicit delay wins
    assert touchless.get(0).as_cloud()["state"] == "open"
    await until(lambda: touchless.get(0).as_cloud()["state"] == "closed", timeout=5)


async def test_disable_stops_the_auto_close(touchless, motors):
    await touchless.execute(0, parse_command({"command": "open"}))
    await touchless.execute(0, parse_command({"command": "disable"}))
    await asyncio.sleep(0.6)
    assert touchless.get(0).as_cloud()["state"] == "open"
    assert (0, "front", "close") not in motors.drives


async def test_a_disk_that_refuses_shows_what_is_sensed_marked_and_loses_nothing(
    locker, outbox, monkeypatch
):
    import sqlite3

    def refuse(*_a, **_k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(outbox, "_make_room", refuse)
    before = len(outbox.pending(100))
    locker.door_sensed(4, "front", True)  # forced: nobody asked
    # Shown as sensed, marked as not yet recorded; the alarm is decided at once and
    # waits behind the door's record (the API lists recorded alarms only).
    shown = locker.get(4).as_cloud()
    assert (shown["state"], shown["recorded"]) == ("open", False)
    assert alarms(locker, 4) == []
    assert outbox.problems() == ["outbox cannot write: database or disk is full"]
    assert locker.journal.problems() == [
        "2 changes waiting for the outbox to take them",
        "cabinet 4 front door: shown open as sensed, not yet recorded",
        "cabinet 4: door_forced_open (front door), not yet recorded",
    ]
    locker.door_sensed(4, "front", False)  # shut again while the disk is full
    monkeypatch.undo()  # space comes back; the journal retries by itself
    await until(lambda: locker.journal.waiting == 0, timeout=3)
    news = [(m.event, list(m.cabinets)) for m in outbox.pending(100)[before:]]
    assert news == [
        ("door_changed", [{"key": 4, "front_status": "open"}]),
        ("door_forced_open", [{"key": 4, "front_status": "open"}]),
        ("door_changed", [{"key": 4, "front_status": "closed"}]),
        ("door_forced_open_cleared", [{"key": 4, "front_status": "closed"}]),
    ]
    shown = locker.get(4).as_cloud()
    assert (shown["state"], shown["recorded"]) == ("closed", True)
    assert outbox.problems() == [] and locker.journal.problems() == []
