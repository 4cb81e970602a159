"""End to end over a real pty: the agent's Kerong driver, the board emulator, the fake cloud."""

import asyncio

import aiohttp

from simulator.run import Simulation

UNLOCK_CAB_5 = bytes.fromhex("02 05 31 03 3B")


async def until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def updates_for(sim, key):
    return [c for c in sim.cloud.cabinet_updates() if c["key"] == key]


async def test_startup_snapshot_reaches_the_cloud(sim):
    body = await sim.cloud.wait_for(lambda b: b["event"]["type"] == "startup", timeout=5)
    assert len(body["cabinets"]) == 16
    assert body["cabinets"][0] == {"key": 0, "front_status": "closed", "rear_status": "closed"}
    assert body["cabinets"][5] == {"key": 5, "front_status": "closed"}


async def test_open_cabinet_5_end_to_end(sim, http):
    async with http.put("/api/lockers/cabinets/5", json={"command": "open", "acted_by": 7}) as resp:
        assert resp.status == 200
        assert (await resp.json())["state"] == "open"
    await sim.boards.wait_for_frame(UNLOCK_CAB_5, timeout=5)
    await sim.cloud.wait_for(lambda c: c == {"key": 5, "front_status": "open"}, timeout=5)

    sim.boards.shut_door(0, 6)
    await until(lambda: len(updates_for(sim, 5)) == 3)
    assert updates_for(sim, 5) == [
        {"key": 5, "front_status": "closed"},  # the start-up snapshot
        {"key": 5, "front_status": "open"},
        {"key": 5, "front_status": "closed"},
    ]
    async with http.get("/api/lockers/cabinets/5") as resp:
        assert (await resp.json())["state"] == "closed"
    assert sim.cloud.rejected == []


async def test_rear_load_door(sim, http):
    body = {"command": "open", "rearload": True}
    async with http.put("/api/lockers/cabinets/2", json=body) as resp:
        assert resp.status == 200
        assert (await resp.json())["rear_load_status"] == "open"
    await sim.boards.wait_for_frame(bytes.fromhex("02 12 31 03 48"), timeout=5)
    await sim.cloud.wait_for(lambda c: c == {"key": 2, "rear_status": "open"}, timeout=5)


async def test_a_person_opening_a_door_is_reported(sim):
    sim.boards.force_open(0, 1)
    await sim.cloud.wait_for(lambda c: c == {"key": 0, "front_status": "open"}, timeout=5)


async def test_silent_board_is_unknown_and_unhealthy_then_recovers(sim, http):
    sim.boards.set_offline(1)
    await until(lambda: sim.agent.locker.get(0).as_cloud()["rear_load_status"] == "unknown")
    async with http.get("/healthz") as resp:
        assert resp.status == 503
        assert any("board 1" in r for r in (await resp.json())["reasons"])
    async with http.get("/api/lockers/cabinets/0") as resp:
        cabinet = await resp.json()
    assert cabinet["rear_load_status"] == "unknown"
    assert cabinet["state"] == "closed"  # board 0 still answers

    sim.boards.set_offline(1, False)
    await until(lambda: sim.agent.locker.get(0).as_cloud()["rear_load_status"] == "closed")
    async with http.get("/healthz") as resp:
        assert resp.status == 200
        health = await resp.json()
    assert set(health["outbox"]) >= {"pending", "bytes", "oldest_age_s", "dead"}
    # unknown is never reported: no door change for the silent doors, and the board
    # events repeat only what the cloud was last told of them (no news, no guess)
    for record in sim.cloud.received:
        body = record["body"]
        rear0 = [c for c in body["cabinets"] if c["key"] == 0 and "rear_status" in c]
        if body["event"]["type"] == "door_changed":
            assert rear0 == []
        if body["event"]["type"] in ("board_offline", "board_online"):
            assert rear0 == [{"key": 0, "front_status": "closed", "rear_status": "closed"}]


async def test_touchless_simulation_opens_a_motorised_door():
    def quick(data):
        data["locker"]["announce_s"] = 0

    sim = Simulation(locker="touchless", adjust=quick)
    await sim.start()
    try:
        headers = {"Authorization": f"Bearer {sim.token}"}
        async with (
            aiohttp.ClientSession(base_url=sim.api_url, headers=headers) as http,
            http.put("/api/lockers/cabinets/1", json={"command": "open"}) as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["state"] == "open"
        assert sim.touchless.position(1) == 1.0
        await sim.cloud.wait_for(lambda c: c == {"key": 1, "front_status": "open"}, timeout=5)
        # the cloud's websocket reaches the same locker
        answer = await sim.cloud.send_command({"id": "c-1", "key": 1, "command": "close"})
        assert answer["ok"] and answer["cabinet"]["state"] == "closed"
    finally:
        await sim.close()


async def test_a_noisy_echoing_line_loses_nothing_and_invents_nothing(sim, http):
    sim.boards.echo = True  # the USB adapter echoes every request

    async def noise():
        while True:
            sim.boards.inject(b"\x02\x00\x35\xff\x13\x37garbage\x03")
            await asyncio.sleep(0.013)

    noisy = asyncio.create_task(noise())
    try:
        async with http.put("/api/lockers/cabinets/5", json={"command": "open"}) as resp:
            assert resp.status == 200
        sim.boards.shut_door(0, 6)
        await until(lambda: len(updates_for(sim, 5)) == 3)
        await asyncio.sleep(0.3)  # time for a phantom change to show up, if there were one
    finally:
        noisy.cancel()
    assert updates_for(sim, 5)[1:] == [
        {"key": 5, "front_status": "open"},
        {"key": 5, "front_status": "closed"},
    ]
    changed = {c["key"] for r in sim.cloud.received[1:] for c in r["body"]["cabinets"]}
    assert changed == {5}


async def test_healthz_says_the_version_and_the_active_alarms(sim, http):
    from agent import __version__

    sim.boards.force_open(0, 3)  # nobody asked: door_forced_open on cabinet 2
    await until(lambda: sim.agent.locker.get(2).alarms)
    async with http.get("/healthz") as resp:
        health = await resp.json()
    assert health["version"] == __version__
    assert {"key": 2, "type": "door_forced_open", "side": "front"} in health["alarms"]


async def test_metrics_count_what_happened(sim, http):
    from prometheus_client.parser import text_string_to_metric_families

    async with http.put("/api/lockers/cabinets/5", json={"command": "open"}) as resp:
        assert resp.status == 200
    await sim.cloud.wait_for(lambda c: c == {"key": 5, "front_status": "open"}, timeout=5)
    async with http.get("/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("locker_agent_commands_total", (("command", "open"), ("result", "ok")))] == 1
    door = (("side", "front"), ("status", "open"))
    assert samples[("locker_agent_door_changes_total", door)] >= 1
    assert samples[("locker_agent_uplink_posts_total", (("status", "200"),))] >= 1
    board0 = (("board", "0"), ("bus", "rs485"))
    assert samples[("locker_agent_bus_replies_total", board0)] > 0
    assert samples[("locker_agent_bus_board_silent", board0)] == 0
    assert samples[("locker_agent_bus_twin_replies_total", board0)] == 0  # one board per address
    assert samples[("locker_agent_outbox_pending", ())] >= 0
    assert samples[("locker_agent_outbox_dead_letters", ())] == 0
    assert samples[("locker_agent_outbox_dead_letters_dropped_total", ())] == 0
    assert samples[("locker_agent_commands_waiting", ())] == 0
    assert samples[("locker_agent_commands_refused_busy_total", ())] == 0
