"""A code that pulsed its lock has done its one open, whatever the door switch says.

Finding: a door switch that never says open (a jam, or a broken switch on a door that
did open) ended the open ``Jammed`` and the code went back to "held": every scan then
pulsed the lock twice more, forever. Now every way an open can end is sorted by the
typed fact ``LockerError.acted``: an open that actuated the lock (or may have) spends
its code and tells the cloud ``confirmed: false``; only a refusal before any pulse
keeps it. Each ending is one case here, on the real ``Locker`` and SQLite files; the
jam once more end to end on the board emulator behind a pseudo-terminal.
"""

from __future__ import annotations

import asyncio

import pytest

from agent.codes.held import HeldCodes
from agent.codes.message import parse_codes
from agent.codes.pickup import Pickup
from agent.locker.commands import CabinetCommand
from agent.locker.errors import Busy, Unavailable
from agent.storage.codes import CodeStore
from simulator.run import Simulation
from tests.agent.codes.orders import NOW, put


def held_for(locker, path) -> HeldCodes:
    doors = {k: ("front", "rear") if c.rear else ("front",) for k, c in locker.cabinets.items()}
    codes = HeldCodes(CodeStore(path), doors, wall=lambda: NOW)
    codes.provision(parse_codes({"put": [put("right")]}))
    return codes


@pytest.fixture
def codes(tmp_path, locker):
    held = held_for(locker, tmp_path / "codes.sqlite3")
    yield held
    held._store.close()


def told(outbox, event: str) -> list:
    return [m for m in outbox.pending(1000) if m.event == event]


def spent_unsure(codes, outbox) -> bool:
    [message] = told(outbox, "code_opened")
    return codes.match("right").state == "spent" and message.detail == {
        "order_id": 46188,
        "side": "front",
        "confirmed": False,
    }


# --- refused before any pulse: the code is kept ------------------------------------


async def scanned_and_pulsed(locker, codes, actuator) -> asyncio.Task:
    """Code "right" scanned at the front reader; returns its task once the lock pulsed."""
    task = asyncio.create_task(Pickup(locker, codes).scanned("front", "right"))
    async with asyncio.timeout(3):
        while not actuator.pulses:
            await asyncio.sleep(0.01)
    return task


async def test_a_pulse_gap_refusal_keeps_the_code(locker, codes, actuator, outbox, monkeypatch):
    async def gap(key, side):
        raise Busy(f"cabinet {key} {side} lock: pulsed less than 30 s ago", retry_after_s=20)

    monkeypatch.setattr(actuator, "release", gap)
    pickup = Pickup(locker, codes)
    assert await pickup.scanned("front", "right") == "busy"
    assert codes.match("right").state == "held" and told(outbox, "code_opened") == []
    monkeypatch.undo()
    assert await pickup.scanned("front", "right") == "opened"  # later, it opens
    assert actuator.pulses == [(1, "front")]


async def test_a_port_that_is_not_open_keeps_the_code(locker, codes, actuator, outbox):
    actuator.unavailable = True  # nothing was sent (the driver's contract)
    pickup = Pickup(locker, codes)
    assert await pickup.scanned("front", "right") == "refused"
    assert codes.match("right").state == "held" and actuator.pulses == []
    actuator.unavailable = False
    assert await pickup.scanned("front", "right") == "opened"


async def test_a_full_intake_keeps_the_code(locker, codes, actuator, outbox, monkeypatch):
    def full(key):
        raise Busy(f"cabinet {key}: too many commands waiting", retry_after_s=1)

    monkeypatch.setattr(locker.intake, "admit", full)
    pickup = Pickup(locker, codes)
    assert await pickup.scanned("front", "right") == "busy"
    assert codes.match("right").state == "held" and actuator.pulses == []


async def test_a_latched_safety_shut_off_keeps_the_code(locker, codes, actuator):
    locker.cabinets[1].thermal_latches["temperature_over_limit"] = "95.0 C"
    pickup = Pickup(locker, codes)
    assert await pickup.scanned("front", "right") == "refused"
    assert codes.match("right").state == "held" and actuator.pulses == []


# --- the lock acted: the code is spent, the cloud told it is unsure -----------------


async def test_a_port_lost_before_the_retry_pulse_spends_the_code(locker, codes, actuator, outbox):
    actuator.jammed.add((1, "front"))
    task = await scanned_and_pulsed(locker, codes, actuator)
    actuator.unavailable = True  # the second pulse cannot go: the first did
    assert await task == "unconfirmed"
    assert actuator.pulses == [(1, "front")] and spent_unsure(codes, outbox)


async def test_an_open_stopped_by_the_agents_stop_after_its_pulse_spends_the_code(
    locker, codes, actuator, outbox
):
    actuator.jammed.add((1, "front"))  # it waits for a switch that does not move
    task = await scanned_and_pulsed(locker, codes, actuator)
    await locker.drain(0.01)
    assert await task == "unconfirmed"
    assert actuator.pulses == [(1, "front")] and spent_unsure(codes, outbox)


async def test_a_stop_during_the_pulse_itself_spends_the_code(
    locker, codes, actuator, outbox, monkeypatch
):
    # The driver holds the lock energised for the pulse once its frame is out, also
    # when its caller is cancelled: a stop then is a pulse that went, not none.
    async def long_pulse(key, side):
        actuator.pulses.append((key, side))  # the frame is on the wire
        await asyncio.sleep(5)

    monkeypatch.setattr(actuator, "release", long_pulse)
    task = await scanned_and_pulsed(locker, codes, actuator)
    await locker.drain(0.01)
    assert await task == "unconfirmed"
    assert spent_unsure(codes, outbox)


async def test_a_code_that_joined_a_jammed_open_is_spent(locker, codes, actuator, outbox):
    actuator.jammed.add((1, "front"))
    cloud = locker.submit(1, CabinetCommand(command="open"))  # the cloud opens it first
    await asyncio.sleep(0)
    pickup = Pickup(locker, codes)
    assert await pickup.scanned("front", "right") == "unconfirmed"  # shares its pulses
    with pytest.raises(Exception, match="did not open"):
        await cloud
    assert actuator.pulses == [(1, "front"), (1, "front")] and spent_unsure(codes, outbox)


async def test_an_obstructed_motorised_door_spends_the_code(tmp_path, touchless, motors, outbox):
    codes = held_for(touchless, tmp_path / "codes.sqlite3")
    motors.obstructed.add((1, "front"))  # it moved, then backed off: someone may reach in
    pickup = Pickup(touchless, codes)
    assert await pickup.scanned("front", "right") == "unconfirmed"
    assert spent_unsure(codes, outbox)
    drives = len(motors.drives)
    assert await pickup.scanned("front", "right") == "spent"
    assert len(motors.drives) == drives
    codes._store.close()


async def test_an_unexpected_error_during_the_open_spends_the_code(
    locker, codes, actuator, outbox, monkeypatch
):
    async def broken(key, side):
        actuator.pulses.append((key, side))
        raise RuntimeError("a bug after the frame went out")

    monkeypatch.setattr(actuator, "release", broken)
    pickup = Pickup(locker, codes)
    assert await pickup.scanned("front", "right") == "unconfirmed"
    assert spent_unsure(codes, outbox)
    assert await pickup.scanned("front", "right") == "spent"
    assert actuator.pulses == [(1, "front")]


def test_the_errors_say_whether_they_acted():
    from agent.locker.errors import Conflict, Invalid, Jammed, NotFound, Obstructed

    assert Jammed("x").acted and Obstructed("x").acted
    assert Conflict("stopped half way", acted=True).acted
    for refused in (Conflict("disabled"), Invalid("x"), NotFound("x"), Unavailable("x")):
        assert not refused.acted
    assert not Busy("x", retry_after_s=1).acted


async def test_a_command_id_begun_before_a_restart_is_said_to_have_acted(store):
    from agent.locker.errors import LockerError
    from agent.locker.idempotency import CommandLog

    store.save_command("cloud:1", "fp", NOW, "running", {})
    with pytest.raises(LockerError) as raised:
        await CommandLog(store).run("cloud:1", lambda: None, "fp")  # type: ignore[arg-type]
    assert raised.value.acted


# --- end to end: the lock board emulator on a pseudo-terminal -----------------------


async def until(check, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def test_a_jammed_lock_on_the_board_spends_the_code_and_the_cloud_hears_it(tmp_path):
    def quick(data):
        data["locker"].update(confirm_s=0.4, jam_retry_s=0.1, min_pulse_gap_s=0.5)

    sim = Simulation(storage_dir=tmp_path, adjust=quick)
    await sim.start()
    try:
        assert sim.boards is not None and sim.agent is not None
        await sim.cloud.wait_for_agent(10)
        order = await sim.cloud.create_order(3, code="ECHO-5")
        assert order["provisioned"], order
        sim.boards.jam(0, 4)  # cabinet 3's front lock: a pulse moves nothing
        sim.scanner.scan("ECHO-5")
        await until(lambda: sim.cloud.orders[0]["collected"])
        events = [r["body"]["event"] for r in sim.cloud.received]
        [opened] = [e for e in events if e["type"] == "code_opened"]
        assert opened == {
            "type": "code_opened",
            "order_id": order["id"],
            "side": "front",
            "confirmed": False,
        }
        assert any(e["type"] == "lock_jammed" for e in events)
        assert sim.boards.bank.unlocked.count((0, 4)) == 2
        pickup = sim.agent.codes.pickup
        sim.scanner.scan("ECHO-5")
        await until(lambda: pickup.outcomes.get("spent") == 1)
        await asyncio.sleep(1.0)  # a second open would pulse well within this
        assert sim.boards.bank.unlocked.count((0, 4)) == 2
        assert pickup.outcomes == {"unconfirmed": 1, "spent": 1}
    finally:
        await sim.close()
