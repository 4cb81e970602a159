import asyncio

import pytest

from agent.locker.commands import error_body, parse_command
from agent.locker.errors import LockerError


def changes(outbox):
    return [(m.kind, m.event, list(m.cabinets)) for m in outbox.pending(100)]


async def test_startup_snapshot_holds_the_whole_locker(outbox, store):
    from agent.locker.cabinet import Cabinet, Door
    from agent.locker.locker import Locker

    locker = Locker([Cabinet(0, "mini", rear=Door()), Cabinet(1, "mini")], outbox, store)
    locker.door_sensed(0, "front", False)
    locker.door_sensed(0, "rear", True)
    # cabinet 1's board did not answer: it is left out, not guessed
    locker.report_startup()
    assert changes(outbox) == [
        ("snapshot", "startup", [{"key": 0, "front_status": "closed", "rear_status": "open"}])
    ]
    locker.door_sensed(1, "front", True)
    assert changes(outbox)[-1] == ("change", "door_changed", [{"key": 1, "front_status": "open"}])


async def test_open_pulses_and_confirms(locker, actuator, outbox):
    seen = []
    task = asyncio.create_task(locker.execute(5, parse_command({"command": "open"})))
    await asyncio.sleep(0)
    seen.append(locker.get(5).as_cloud()["state"])
    cabinet = await task
    assert seen == ["opening"]
    assert cabinet.as_cloud()["state"] == "open"
    assert actuator.pulses == [(5, "front")]
    assert changes(outbox)[-1] == ("change", "door_changed", [{"key": 5, "front_status": "open"}])


async def test_an_open_reading_still_pulses_once(locker, actuator):
    """A feedback wire stuck at "open" must not lock a customer out: pulse anyway
    (nothing happens to an open latch) and report what the sensor shows."""
    locker.door_sensed(3, "front", True)
    cabinet = await locker.execute(3, parse_command({"command": "open"}))
    assert actuator.pulses == [(3, "front")]
    assert cabinet.as_cloud()["state"] == "open"


async def test_a_quick_shut_during_the_pulse_confirms_the_open(locker, actuator, monkeypatch):
    """The person opens and shuts the door before the pulse ends: one pulse, success."""

    async def quick_hand(key, side):
        actuator.pulses.append((key, side))
        locker.door_sensed(key, side, True)  # opened by the pulse...
        locker.door_sensed(key, side, False)  # ...and shut again within it
        await asyncio.sleep(0.05)  # the rest of the pulse

    monkeypatch.setattr(actuator, "release", quick_hand)
    cabinet = await locker.execute(2, parse_command({"command": "open"}))
    assert actuator.pulses == [(2, "front")]
    assert cabinet.as_cloud()["state"] == "closed"
    assert locker.get(2).as_cloud()["alarms"] == []
    assert [m.cabinets[0]["front_status"] for m in changes_of(locker)] == ["open", "closed"]


def changes_of(locker):
    outbox = locker.journal._outbox
    return [m for m in outbox.pending(100) if m.kind == "change"]


async def test_rearload_opens_the_rear_door(locker, actuator):
    cabinet = await locker.execute(1, parse_command({"command": "open", "rearload": True}))
    assert actuator.pulses == [(1, "rear")]
    assert cabinet.as_cloud()["rear_load_status"] == "open"
    assert cabinet.as_cloud()["state"] == "closed"


async def test_rearload_without_rear_door_is_409(locker, actuator):
    with pytest.raises(LockerError) as err:
        await locker.execute(4, parse_command({"command": "open", "rearload": True}))
    assert error_body(err.value)[0] == 409
    assert actuator.pulses == []


async def test_disabled_cabinet_refuses_open(locker, actuator):
    await locker.execute(2, parse_command({"command": "disable"}))
    assert locker.get(2).as_cloud()["enabled"] is False
    with pytest.raises(LockerError) as err:
        await locker.execute(2, parse_command({"command": "open"}))
    assert error_body(err.value)[0] == 409
    await locker.execute(2, parse_command({"command": "enable"}))
    await locker.execute(2, parse_command({"command": "open"}))
    assert actuator.pulses == [(2, "front")]


async def test_unknown_door_is_not_pulsed(locker, actuator):
    locker.door_sensed(2, "front", None)
    assert locker.get(2).as_cloud()["state"] == "unknown"
    with pytest.raises(LockerError) as err:
        await locker.execute(2, parse_command({"command": "open"}))
    assert error_body(err.value)[0] == 503
    assert actuator.pulses == []


async def test_unknown_is_never_reported(locker, outbox):
    before = len(outbox.pending(100))
    locker.door_sensed(2, "front", None)
    locker.door_sensed(2, "front", False)  # back, as it was: nothing new for the cloud
    assert len(outbox.pending(100)) == before
    locker.door_sensed(2, "front", None)
    locker.door_sensed(2, "front", True)
    assert changes(outbox)[-1][2] == [{"key": 2, "front_status": "open"}]


async def test_lock_that_does_not_open_is_an_error(locker, actuator):
    actuator.jammed.add((0, "front"))
    with pytest.raises(LockerError) as err:
        await locker.execute(0, parse_command({"command": "open"}))
    assert error_body(err.value)[0] == 409
    assert error_body(err.value)[1]["type"] == "LOCK_JAMMED"
    assert actuator.pulses == [(0, "front"), (0, "front")]  # one retry
    assert locker.get(0).as_cloud()["state"] == "closed"


async def test_hardware_unavailable_is_503(locker, actuator):
    actuator.unavailable = True
    with pytest.raises(LockerError) as err:
        await locker.execute(0, parse_command({"command": "open"}))
    assert error_body(err.value)[0] == 503
    assert locker.get(0).as_cloud()["state"] == "closed"


async def test_commands_on_one_cabinet_never_interleave(locker, actuator):
    actuator.delay = 0.05
    order = []

    async def run(body):
        await locker.execute(0, parse_command(body))
        order.append(body["command"])

    await asyncio.gather(
        run({"command": "open"}),
        run({"command": "disable"}),
        run({"command": "resize", "size": "large"}),
    )
    # open finished (door confirmed) before disable ran: it was not refused
    assert order == ["open", "disable", "resize"]
    assert actuator.pulses == [(0, "front")]


async def test_close_resize_thermal(locker, actuator):
    cab = await locker.execute(0, parse_command({"command": "close", "delay": 3}))
    assert cab.as_cloud()["state"] == "closed"
    cab = await locker.execute(0, parse_command({"command": "resize", "size": "large"}))
    assert cab.as_cloud()["size"] == "large"
    locker.get(0).thermal_modes = frozenset({"ambient", "chill"})
    cab = await locker.execute(
        0, parse_command({"command": "set_thermal_mode", "thermal_mode": "chill"})
    )
    assert cab.as_cloud()["thermal_mode"] == "chill"


async def test_a_thermal_mode_the_hardware_cannot_give_is_409(locker, actuator):
    """DESIGN.md, "Thermal": set_thermal_mode to a mode the cabinet's hardware cannot
    give answers 409 CONFLICT, and says why; ambient (all off) is always possible."""
    with pytest.raises(LockerError) as err:
        await locker.execute(
            2, parse_command({"command": "set_thermal_mode", "thermal_mode": "heat"})
        )
    assert error_body(err.value)[0] == 409
    assert "no thermal unit" in err.value.message
    assert locker.get(2).as_cloud()["thermal_mode"] == "ambient"
    cab = await locker.execute(
        2, parse_command({"command": "set_thermal_mode", "thermal_mode": "ambient"})
    )
    assert cab.as_cloud()["thermal_mode"] == "ambient"


def test_items_set_occupied(locker):
    locker.item_sensed(3, True)
    assert locker.get(3).as_cloud()["occupied"] == 1


async def test_settings_survive_a_restart(outbox, store, actuator, locker):
    from agent.locker.cabinet import Cabinet
    from agent.locker.locker import Locker

    await locker.execute(2, parse_command({"command": "disable"}))
    await locker.execute(3, parse_command({"command": "resize", "size": "large"}))
    locker.get(3).thermal_modes = frozenset({"ambient", "heat"})
    await locker.execute(3, parse_command({"command": "set_thermal_mode", "thermal_mode": "heat"}))
    # a power cut later, a new process reads the same store
    again = Locker([Cabinet(k, "mini") for k in range(6)], outbox, store)
    assert again.get(2).as_cloud()["enabled"] is False
    assert again.get(3).as_cloud()["size"] == "large"
    assert again.get(3).as_cloud()["thermal_mode"] == "heat"
    assert again.get(4).as_cloud()["enabled"] is True


async def test_a_bus_lost_after_the_first_pulse_never_lets_a_retry_pulse_again(
    locker, actuator, monkeypatch
):
    """A jammed lock pulsed once, then the adapter dropped out before the retry: the
    command acted, so its failure is remembered (409, outcome unknown), not forgotten
    like a moment: the same id sent again pulses nothing."""
    from agent.locker.errors import Conflict, Unavailable

    actuator.jammed.add((5, "front"))
    release = actuator.release

    async def drop_after_one(key, side):
        if actuator.pulses:
            raise Unavailable("bus rs485: port not open")
        await release(key, side)

    monkeypatch.setattr(actuator, "release", drop_after_one)
    cmd = parse_command({"command": "open"})
    with pytest.raises(Conflict, match="outcome is unknown"):
        await locker.command(5, cmd, "local:abc-1")
    monkeypatch.setattr(actuator, "release", release)
    actuator.jammed.clear()
    with pytest.raises(Conflict):
        await locker.command(5, cmd, "local:abc-1")
    assert actuator.pulses == [(5, "front")]
