"""The touchless locker simulator against the real agent, through gpiozero mock pins."""

import asyncio
import contextlib
import json
from dataclasses import dataclass

import aiohttp
import pytest
from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin

from agent.app import Agent
from agent.config import Config, parse_config
from agent.locker.commands import error_body, parse_command
from agent.locker.errors import LockerError
from simulator.cloud import FakeCloud
from simulator.mock_pins import mock_factory
from simulator.run import Simulation, default_config_data, free_port
from simulator.touchless import TouchlessLocker

TRAVEL_S = 0.1


def touchless_data():
    return default_config_data("touchless")


def quick(data):
    data["locker"].update(timer_s=1, confirm_s=0.2, jam_retry_s=0.1)
    data["buses"][0].update(pulse_s=0.05, motor_max_s=0.5, stagger_s=0.0, debounce_s=0.01)


def fast(data, tmp_path):
    """For the simulator alone: addresses nothing listens on, quick timings."""
    data["cloud"]["url"] = "http://127.0.0.1:9"
    data["storage"]["dir"] = str(tmp_path)
    data["api"]["listen"] = f"127.0.0.1:{free_port()}"
    quick(data)
    return data


@dataclass
class World:
    config: Config
    factory: MockFactory
    sim: TouchlessLocker
    agent: Agent
    cloud: FakeCloud

    @property
    def locker(self):
        return self.agent.locker

    def cabinet(self, key):
        return self.agent.locker.get(key).as_cloud()

    def alarms(self, key):
        return [(a["type"], a["side"]) for a in self.cabinet(key)["alarms"]]

    async def command(self, key, body):
        return await self.agent.locker.command(key, parse_command(body))

    async def event(self, name, timeout=5.0):
        return await self.cloud.wait_for(lambda b: b["event"]["type"] == name, timeout=timeout)

    async def update(self, entry, timeout=5.0):
        return await self.cloud.wait_for(lambda c: c == entry, timeout=timeout)

    def http(self):
        return aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{self.config.api.port}",
            headers={"Authorization": f"Bearer {self.config.api.token.get_secret_value()}"},
        )


@contextlib.asynccontextmanager
async def running(tmp_path, change=None):
    """The touchless simulation (fake cloud, simulated locker, agent) with quick timings."""

    def adjust(data):
        quick(data)
        if change is not None:
            change(data)

    sim = Simulation(locker="touchless", storage_dir=tmp_path, adjust=adjust, travel_s=TRAVEL_S)
    await sim.start()
    try:
        assert sim.agent is not None and sim.touchless is not None
        yield World(sim.agent.config, sim.touchless.factory, sim.touchless, sim.agent, sim.cloud)
    finally:
        await sim.close()


@pytest.fixture
async def world(tmp_path):
    async with running(tmp_path) as w:
        yield w


async def until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def near(color, expected, tol=0.02):
    return all(abs(a - b) <= tol for a, b in zip(color, expected, strict=True))


async def assert_idle_pattern(sim, key):
    """The "ready" pattern: fully saturated colours, cycling."""
    await asyncio.sleep(0.06)  # an animation task draws its first colour on its first step
    first = sim.led(key)
    await asyncio.sleep(0.25)
    second = sim.led(key)
    for color in (first, second):
        assert max(color) == pytest.approx(1.0, abs=0.01)
        assert min(color) == pytest.approx(0.0, abs=0.01)
    assert not near(first, second, tol=0.01)


# ------------------------------------------------------------------- with the agent


async def test_the_agent_starts_on_a_quiet_locker(world):
    body = await world.event("startup")
    assert body["cabinets"] == [
        {"key": k, "front_status": "closed", "rear_status": "closed"} for k in range(4)
    ]
    for key in range(4):
        cabinet = world.cabinet(key)
        assert cabinet["state"] == "closed"
        assert cabinet["rear_load_status"] == "closed"
        assert cabinet["occupied"] == 0
        assert cabinet["alarms"] == []
        assert world.sim.position(key) == 0.0
        assert not world.sim.rear_open(key)
    snapshot = world.sim.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert [c["key"] for c in snapshot["cabinets"]] == [0, 1, 2, 3]
    assert world.cloud.rejected == []


async def test_open_drives_fully_open_then_auto_close_shuts(world):
    changed = []
    world.sim.on_change = changed.append
    async with (
        world.http() as http,
        http.put("/api/lockers/cabinets/0", json={"command": "open"}) as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["state"] == "open"
    assert world.sim.position(0) == 1.0
    assert world.sim.motor(0) is None  # stopped at the end switch
    assert near(world.sim.led(0), (0.0, 1.0, 0.0))
    await world.update({"key": 0, "front_status": "open"})
    assert 0 in changed

    # timer_s later the agent closes it by itself.
    await until(lambda: world.cabinet(0)["state"] == "closed")
    await world.update({"key": 0, "front_status": "closed"})
    assert world.sim.position(0) == 0.0
    await assert_idle_pattern(world.sim, 0)
    assert [c for c in world.cloud.cabinet_updates() if c["key"] == 0] == [
        {"key": 0, "front_status": "closed", "rear_status": "closed"},
        {"key": 0, "front_status": "open"},
        {"key": 0, "front_status": "closed"},
    ]


async def test_a_blocked_beam_stops_a_closing_door_and_it_reopens(world):
    sim = world.sim
    await world.command(1, {"command": "open"})
    blocked_at = []
    lowest = [1.0]

    def hand_in_the_doorway(key):
        if key != 1:
            return
        if not blocked_at and sim.motor(1) == "closing" and sim.position(1) < 0.9:
            sim.block_beam(1)
            blocked_at.append(sim.position(1))
        if blocked_at:
            lowest[0] = min(lowest[0], sim.position(1))

    sim.on_change = hand_in_the_doorway
    with pytest.raises(LockerError) as err:
        await world.command(1, {"command": "close"})
    assert error_body(err.value)[0] == 409 and error_body(err.value)[1]["type"] == "DOOR_OBSTRUCTED"
    assert blocked_at, "the door never started closing"
    assert lowest[0] >= blocked_at[0]  # it never moved on towards shut
    assert world.agent.locker.get(1).as_cloud()["state"] == "open"  # it went back open
    assert sim.position(1) == 1.0
    assert ("door_obstructed", "front") in world.alarms(1)
    body = await world.event("door_obstructed")
    assert body["cabinets"] == [{"key": 1, "front_status": "open", "rear_status": "closed"}]

    sim.on_change = None
    sim.block_beam(1, on=False)
    await asyncio.sleep(0.1)  # the hand is gone a moment before the next close
    answer = await world.command(1, {"command": "close"})
    assert answer["state"] == "closed"
    assert sim.position(1) == 0.0
    assert world.alarms(1) == []
    await world.event("door_obstructed_cleared")


async def test_a_broken_motor_never_reaches_the_end_switch(world):
    world.sim.motor_broken(2)
    with pytest.raises(LockerError) as err:
        await world.command(2, {"command": "open"})
    assert error_body(err.value)[0] == 409
    assert error_body(err.value)[1]["type"] == "DOOR_OBSTRUCTED"
    assert world.sim.position(2) == 0.0
    assert world.cabinet(2)["state"] == "closed"
    assert ("door_obstructed", "front") in world.alarms(2)
    await world.event("door_obstructed")


async def test_a_forced_front_door_raises_the_alarm(world):
    world.sim.push_open(3)
    assert 0.0 < world.sim.position(3) < 1.0
    body = await world.event("door_forced_open")
    assert body["cabinets"] == [{"key": 3, "front_status": "open", "rear_status": "closed"}]
    assert ("door_forced_open", "front") in world.alarms(3)
    world.sim.shut_front(3)
    await world.event("door_forced_open_cleared")
    assert world.cabinet(3)["state"] == "closed"


async def test_the_rear_latch_opens_on_a_pulse(world):
    answer = await world.command(0, {"command": "open", "rearload": True})
    assert answer["rear_load_status"] == "open"
    assert answer["state"] == "closed"  # the front stays shut
    assert world.sim.rear_open(0)
    assert world.sim.lock_pulses(0) == 1
    await world.update({"key": 0, "rear_status": "open"})
    world.sim.shut_rear(0)
    await world.update({"key": 0, "rear_status": "closed"})
    assert world.cabinet(0)["rear_load_status"] == "closed"


async def test_a_jammed_rear_latch_is_retried_once_then_alarms(world):
    world.sim.jam_latch(1)
    with pytest.raises(LockerError) as err:
        await world.command(1, {"command": "open", "rearload": True})
    assert error_body(err.value)[0] == 409
    assert error_body(err.value)[1]["type"] == "LOCK_JAMMED"
    assert world.sim.lock_pulses(1) == 2  # the pulse and its one retry
    assert not world.sim.rear_open(1)
    assert ("lock_jammed", "rear") in world.alarms(1)
    await world.event("lock_jammed")

    world.sim.jam_latch(1, on=False)
    await world.command(1, {"command": "open", "rearload": True})
    assert world.alarms(1) == []
    await world.event("lock_jammed_cleared")


async def test_a_staff_member_shuts_the_rear_door(world):
    world.sim.auto_shut_rear_after_s = 0.1
    await world.command(2, {"command": "open", "rearload": True})
    await world.update({"key": 2, "rear_status": "closed"})
    assert not world.sim.rear_open(2)


async def test_the_item_sensor_sets_occupied(world):
    world.sim.set_item(2, True)
    async with world.http() as http:
        async with asyncio.timeout(5):
            while True:
                async with http.get("/api/lockers/cabinets/2") as resp:
                    if (await resp.json())["occupied"] == 1:
                        break
                await asyncio.sleep(0.01)
        world.sim.set_item(2, False)
        await until(lambda: world.cabinet(2)["occupied"] == 0)
    assert world.sim.snapshot()["cabinets"][2]["item"] is False


async def test_active_low_outputs(tmp_path):
    """Relays and a common-anode LED wired with "!": energised and lit while low."""

    def active_low(data):
        cab = data["cabinets"][0]
        cab["front"].update(motor_open="!4", motor_close="!5")
        cab["rear"]["lock"] = "!8"
        cab["indicator"].update(red="!10", green="!11", blue="!12")

    async with running(tmp_path, active_low) as w:
        assert w.sim.motor(0) is None
        assert w.sim.lock_pulses(0) == 0
        await w.command(0, {"command": "open"})
        assert w.sim.position(0) == 1.0
        assert near(w.sim.led(0), (0.0, 1.0, 0.0))
        await w.command(0, {"command": "open", "rearload": True})
        assert w.sim.rear_open(0)
        assert w.sim.lock_pulses(0) == 1
        sim = w.sim
    # Closing the devices puts the lines back to input: no pulse, nothing lit.
    assert sim.lock_pulses(0) == 1
    assert sim.led(0) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------- the simulator alone


@pytest.fixture
async def alone(tmp_path):
    config = parse_config(fast(touchless_data(), tmp_path), tmp_path)
    sim = TouchlessLocker.from_config(config, travel_s=TRAVEL_S)
    await sim.start()
    yield sim
    await sim.close()


def device(cls, sim, pin, **kwargs):
    return cls(pin, pin_factory=sim.factory, **kwargs)


async def test_a_pull_up_does_not_override_a_shut_switch(alone):
    closed = device(DigitalInputDevice, alone, 2, pull_up=True)  # "^!2": door 0 shut
    fully_open = device(DigitalInputDevice, alone, 3, pull_up=True)
    beam = device(DigitalInputDevice, alone, 6, pull_up=True)
    assert closed.is_active and not fully_open.is_active and not beam.is_active
    assert alone.factory.pin(2).state == 0  # shorted to ground
    alone.push_open(0)
    assert not closed.is_active
    alone.shut_front(0)
    assert closed.is_active
    for d in (closed, fully_open, beam):
        d.close()


async def test_motor_physics(alone):
    opening = device(DigitalOutputDevice, alone, 4)
    closing = device(DigitalOutputDevice, alone, 5)
    closed = device(DigitalInputDevice, alone, 2, pull_up=True)
    fully_open = device(DigitalInputDevice, alone, 3, pull_up=True)

    opening.on()
    await until(lambda: alone.position(0) == 1.0)
    assert fully_open.is_active and not closed.is_active
    assert alone.motor(0) == "opening"

    closing.on()  # both: a fault, nothing moves
    await until(lambda: alone.motor(0) == "fault")
    assert alone.snapshot()["cabinets"][0]["front"]["motor"] == "fault"
    opening.off()
    alone.block_beam(0)
    await until(lambda: alone.motor(0) == "closing")
    await asyncio.sleep(2 * TRAVEL_S)
    assert alone.position(0) == 1.0  # the beam holds it
    alone.block_beam(0, on=False)
    await until(lambda: alone.position(0) == 0.0)
    assert closed.is_active and not fully_open.is_active
    closing.off()

    alone.motor_broken(0)
    opening.on()
    await asyncio.sleep(2 * TRAVEL_S)
    assert alone.position(0) == 0.0 and closed.is_active
    opening.off()
    for d in (opening, closing, closed, fully_open):
        d.close()


async def test_on_change_reports_the_cabinet(alone):
    seen = []
    alone.on_change = seen.append
    alone.set_item(1, True)
    alone.push_open(3)
    alone.block_beam(3)
    assert seen == [1, 3, 3]
    assert alone.snapshot()["cabinets"][3]["front"]["beam"] is True


async def test_unknown_cabinets_and_parts_are_refused(alone):
    with pytest.raises(ValueError):
        alone.position(7)
    with pytest.raises(ValueError):
        alone.motor_broken(0, side="rear")  # a latch door has no motor
    with pytest.raises(AttributeError):
        alone.auto_shut_rear_after = 0.1  # renamed auto_shut_rear_after_s: no silent no-op


def test_pins_past_the_header_need_the_full_bank_factory(tmp_path):
    config = parse_config(fast(touchless_data(), tmp_path), tmp_path)
    # gpiozero's own mock board stops at GPIO27; cabinets 2 and 3 are wired past it.
    with pytest.raises(ValueError, match="mock_factory"):
        TouchlessLocker(config, MockFactory(pin_class=MockPWMPin))
    assert TouchlessLocker(config, mock_factory()).keys == [0, 1, 2, 3]


async def test_left_open_and_rear_while_front_open_on_mock_pins(tmp_path):
    def short(data):
        data["locker"].update(left_open_s=1, timer_s=30)

    async with running(tmp_path, short) as world:
        await world.command(2, {"command": "open"})
        await world.command(2, {"command": "open", "rearload": True})
        body = await world.event("rear_opened_while_front_open")
        assert body["cabinets"] == [{"key": 2, "front_status": "open", "rear_status": "open"}]
        await world.event("door_left_open")
        assert ("door_left_open", "front") in world.alarms(2)
        world.sim.shut_rear(2)
        await world.event("rear_opened_while_front_open_cleared")
        await world.command(2, {"command": "close"})
        await world.event("door_left_open_cleared")
        assert world.alarms(2) == []
