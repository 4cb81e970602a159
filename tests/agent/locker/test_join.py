"""Opens of one door that pile up are carried out once, and only when nothing came
between them; a stop answers every joined open with what the open it shared did.

Findings: open, close, open to a motorised door were all answered ok and the door
ended closed (the third open joined the first across the close); an open that had
joined another got no answer at SIGTERM, on the channel and on the local API.
"""

from __future__ import annotations

import asyncio

import aiohttp

from simulator.run import Simulation


async def test_open_close_open_ends_open():
    sim = Simulation(locker="touchless")
    await sim.start()
    try:
        sends = []
        for i, command in enumerate(["open", "close", "open"]):
            body = {"id": f"c{i}", "key": 1, "command": command}
            sends.append(asyncio.create_task(sim.cloud.send_command(body, timeout=30)))
            await asyncio.sleep(0.1)
        answers = await asyncio.gather(*sends)
        assert [a["ok"] for a in answers] == [True, True, True], answers
        assert answers[-1]["cabinet"]["state"] in ("open", "opening")
        await asyncio.sleep(0.5)
        assert sim.agent.locker.cabinets[1].as_cloud()["state"] in ("open", "opening")
    finally:
        await sim.close()


async def test_opens_in_a_row_still_join():
    sim = Simulation()
    await sim.start()
    try:
        acted = sim.agent.locker.actions.acted(0)
        sends = [
            asyncio.create_task(
                sim.cloud.send_command({"id": f"o{i}", "key": 0, "command": "open"}, timeout=20)
            )
            for i in range(3)
        ]
        answers = await asyncio.gather(*sends)
        assert all(a["ok"] for a in answers), answers
        assert sim.agent.locker.actions.acted(0) == acted + 1  # one pulse for three opens
    finally:
        await sim.close()


async def test_a_joined_open_is_answered_at_stop_on_the_channel():
    sim = Simulation()
    await sim.start()
    try:
        sim.boards.jam(0, 1)  # cabinet 0's front lock: the open retries past the drain
        sent = []
        for i in range(2):  # the second joins the first
            body = {"id": f"s{i}", "key": 0, "command": "open"}
            sent.append(asyncio.create_task(sim.cloud.send_command(body, timeout=20)))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.8)
        await sim.agent.close()
        sim.agent = None
        first, joined = await asyncio.wait_for(asyncio.gather(*sent), 10)
        assert not first["ok"] and not joined["ok"]
        assert joined["error"]["type"] == first["error"]["type"], (first, joined)
    finally:
        await sim.close()


async def test_a_joined_open_is_answered_at_stop_on_the_local_api():
    sim = Simulation()
    await sim.start()
    try:
        sim.boards.jam(0, 1)
        url = f"{sim.api_url}/api/lockers/cabinets/0"
        headers = {"Authorization": f"Bearer {sim.token}"}
        async with aiohttp.ClientSession() as http:

            async def put() -> int:
                async with http.put(url, json={"command": "open"}, headers=headers) as resp:
                    return resp.status

            first = asyncio.create_task(put())
            await asyncio.sleep(0.05)
            joined = asyncio.create_task(put())
            await asyncio.sleep(0.8)
            await sim.agent.close()
            sim.agent = None
            statuses = await asyncio.wait_for(asyncio.gather(first, joined), 10)
        assert statuses[1] == statuses[0] and statuses[0] in (409, 503), statuses
    finally:
        await sim.close()
