"""Supervision and safety on the emulated KR-CU16 board, end to end over a pty."""

import asyncio
import itertools
import time

import aiohttp

from simulator.run import Simulation

UNLOCK_CAB_2 = bytes.fromhex("02 02 31 03 38")


def fast(data):
    data["locker"].update(confirm_s=0.4, jam_retry_s=0.1, left_open_s=5, health_interval_s=0.2)
    data["buses"][0].update(pulse_s=0.1, stagger_s=0.05, max_concurrent=1)


sim_options = {"adjust": fast}


def cloud_events(sim):
    return [r["body"]["event"]["type"] for r in sim.cloud.received]


async def test_jammed_lock_retries_once_then_alarms(sim, http):
    sim.boards.jam(0, 3)
    async with http.put("/api/lockers/cabinets/2", json={"command": "open"}) as resp:
        assert resp.status == 409
        assert (await resp.json())["type"] == "LOCK_JAMMED"
    assert sim.boards.received.count(UNLOCK_CAB_2) == 2
    body = await sim.cloud.wait_for(lambda b: b["event"]["type"] == "lock_jammed", timeout=5)
    assert body["cabinets"] == [{"key": 2, "front_status": "closed", "rear_status": "closed"}]
    async with http.get("/api/lockers/cabinets/2") as resp:
        assert (await resp.json())["alarms"] == [{"type": "lock_jammed", "side": "front"}]

    sim.boards.jam(0, 3, on=False)
    async with http.put("/api/lockers/cabinets/2", json={"command": "open"}) as resp:
        assert resp.status == 200
    await sim.cloud.wait_for(lambda b: b["event"]["type"] == "lock_jammed_cleared", timeout=5)


async def test_forced_door_is_an_alarm_until_shut(sim):
    sim.boards.force_open(0, 8)
    body = await sim.cloud.wait_for(lambda b: b["event"]["type"] == "door_forced_open", timeout=5)
    assert body["cabinets"] == [{"key": 7, "front_status": "open"}]
    sim.boards.shut_door(0, 8)
    await sim.cloud.wait_for(lambda b: b["event"]["type"] == "door_forced_open_cleared", timeout=5)


async def test_board_offline_and_back_reach_the_cloud(sim):
    """Each names its bus and board and carries only the cabinets that board serves
    (board 1: the rear doors of cabinets 0-3), never the whole locker."""
    sim.boards.set_offline(1)
    body = await sim.cloud.wait_for(lambda b: b["event"]["type"] == "board_offline", timeout=15)
    assert body["event"] == {"type": "board_offline", "bus": "rs485", "board": 1}
    assert sorted(c["key"] for c in body["cabinets"]) == [0, 1, 2, 3]
    sim.boards.set_offline(1, False)
    body = await sim.cloud.wait_for(lambda b: b["event"]["type"] == "board_online", timeout=15)
    assert body["event"] == {"type": "board_online", "bus": "rs485", "board": 1}


async def test_rear_opened_while_front_open(sim, http):
    async with http.put("/api/lockers/cabinets/1", json={"command": "open"}) as resp:
        assert resp.status == 200
    async with http.put("/api/lockers/cabinets/1", json={"command": "open", "rearload": True}) as r:
        assert r.status == 200
    await sim.cloud.wait_for(
        lambda b: b["event"]["type"] == "rear_opened_while_front_open", timeout=5
    )


async def test_open_all_staggers_the_pulses(sim, http):
    popped = {}
    sim.boards.on_change = lambda board, ch: popped.setdefault((board, ch), time.monotonic())
    async with http.post("/api/lockers/open-all", json={}) as resp:
        assert resp.status == 200
        results = await resp.json()
    assert len(results) == 16 and all(r["ok"] for r in results)
    starts = sorted(t for (board, _), t in popped.items() if board == 0)
    assert len(starts) == 16
    # one pulse at a time, each held pulse_s (0.1 s): no two overlap
    for earlier, later in itertools.pairwise(starts):
        assert later - earlier >= 0.1 - 0.01


async def test_left_open_alarm_on_a_latch_door():
    def short(data):
        fast(data)
        data["locker"]["left_open_s"] = 1

    sim = Simulation(adjust=short)
    await sim.start()
    try:
        sim.boards.force_open(0, 10)
        await sim.cloud.wait_for(lambda b: b["event"]["type"] == "door_left_open", timeout=5)
        sim.boards.shut_door(0, 10)
        await sim.cloud.wait_for(
            lambda b: b["event"]["type"] == "door_left_open_cleared", timeout=5
        )
    finally:
        await sim.close()


async def test_duplicated_cloud_command_acts_once(sim):
    await sim.cloud.wait_for_agent(timeout=5)
    body = {"id": "cmd-1", "key": 5, "command": "open"}
    first = await sim.cloud.send_command(body)
    sim.boards.shut_door(0, 6)
    await asyncio.sleep(0.2)
    second = await sim.cloud.send_command(body)
    assert first == second and first["ok"]
    assert sim.boards.received.count(bytes.fromhex("02 05 31 03 3B")) == 1


async def test_a_silent_bus_is_one_event_and_the_cloud_still_hears(sim):
    """Every board silent: one bus_offline (carrying what the cloud was last told),
    no board_offline per board; heartbeats would go on. Then bus_online."""
    for board in sim.boards.boards:
        sim.boards.set_offline(board)
    body = await sim.cloud.wait_for(lambda b: b["event"]["type"] == "bus_offline", timeout=10)
    assert len(body["cabinets"]) == 16  # every cabinet is on this bus, as last told
    assert body["event"] == {"type": "bus_offline", "bus": "rs485", "boards": [0, 1]}
    for board in sim.boards.boards:
        sim.boards.set_offline(board, False)
    await sim.cloud.wait_for(lambda b: b["event"]["type"] == "bus_online", timeout=10)
    await asyncio.sleep(3.5)  # past the health settle time: no late per-board events
    assert "board_offline" not in cloud_events(sim)
    assert cloud_events(sim).count("bus_offline") == 1


async def test_a_person_who_shuts_within_the_pulse_gets_one_pulse_and_success():
    """Pulse 0.5 s; the person opens and shuts the door 0.3 s after it opened."""

    def slow_pulse(data):
        fast(data)
        data["buses"][0].update(pulse_s=0.5)

    sim = Simulation(adjust=slow_pulse, auto_shut_after_s=0.3)
    await sim.start()
    try:
        headers = {"Authorization": f"Bearer {sim.token}"}
        async with (
            aiohttp.ClientSession(base_url=sim.api_url, headers=headers) as http,
            http.put("/api/lockers/cabinets/5", json={"command": "open"}) as resp,
        ):
            assert resp.status == 200, await resp.text()
        unlocks = [f for f in sim.boards.received if f == bytes.fromhex("02 05 31 03 3B")]
        assert len(unlocks) == 1
        assert "lock_jammed" not in cloud_events(sim)
    finally:
        await sim.close()


async def test_a_silent_board_shows_its_doors_and_items_as_unknown(sim, http):
    """What a silent board would tell is not known: the doors are ``unknown`` and the
    item sensors ``null``, never the last reading dressed as the truth."""
    sim.boards.set_item(0, 6, True)
    async with asyncio.timeout(5):
        while (await (await http.get("/api/lockers/cabinets/5")).json())["occupied"] != 1:
            await asyncio.sleep(0.05)
    sim.boards.set_offline(0)
    async with asyncio.timeout(10):
        while True:
            async with http.get("/api/lockers/cabinets/5") as resp:
                cabinet = await resp.json()
            if cabinet["state"] == "unknown":
                break
            await asyncio.sleep(0.05)
    assert cabinet["occupied"] is None
    sim.boards.set_offline(0, False)
    async with asyncio.timeout(10):
        while cabinet["state"] == "unknown":
            async with http.get("/api/lockers/cabinets/5") as resp:
                cabinet = await resp.json()
            await asyncio.sleep(0.05)
    assert cabinet["occupied"] == 1
