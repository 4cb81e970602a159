"""A flood on the cloud's command channel costs the agent the answers, not its memory.

Finding: each channel message got its own task and kept its raw text; 400 opens
padded to 200 KB each, sent behind a slow cabinet, took the agent from 57 MB to
137 MB. Now a message is parsed and admitted in the receive loop: beyond the
bounds (per cabinet and in all) it is answered BUSY at once, and only parsed
commands wait. Through the real path: the fake cloud's websocket, the agent, the
Kerong driver and the board emulator on a pty.
"""

import asyncio
import json
import tracemalloc

import pytest

from agent.locker.intake import PER_CABINET
from simulator.run import Simulation

PAD = 200 * 1024


@pytest.fixture
async def jammed_sim():
    """Every front lock jammed: an open waits out its confirmation, twice (slow)."""
    sim = Simulation()
    await sim.start()
    for channel in range(1, 17):
        sim.boards.jam(0, channel)
    yield sim
    await sim.close()


async def test_a_padded_flood_behind_slow_cabinets_is_bounded_and_answered(jammed_sim):
    sim = jammed_sim
    locker, channel = sim.agent.locker, sim.agent.channel
    most_waiting = most_handlers = 0
    tracemalloc.start()
    try:
        for i in range(400):
            body = json.dumps({"id": f"f{i}", "key": i % 16, "command": "open"})
            await sim.cloud.send_raw(body[:-1] + " " * PAD + "}")
            most_waiting = max(most_waiting, locker.intake.waiting)
            most_handlers = max(most_handlers, len(channel._handlers))
            await asyncio.sleep(0)
        async with asyncio.timeout(5):  # the refusals come at once, not after the jams
            while sum(not a["ok"] for a in sim.cloud.answers) < 400 - locker.intake.total:
                await asyncio.sleep(0.02)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert most_waiting <= locker.intake.total
    assert most_handlers <= locker.intake.total
    assert all(count <= PER_CABINET for count in locker.intake._waiting.values())
    refused = [a for a in sim.cloud.answers if not a["ok"]]
    assert {a["error"]["type"] for a in refused} == {"BUSY"}
    assert peak < 30 * 1024 * 1024, peak  # 400 x 200 KB held would be 80 MB
    assert channel.received == 400


async def test_a_resend_after_busy_runs(jammed_sim):
    """BUSY is a moment, never remembered: the same id sent later is carried out."""
    sim = jammed_sim
    sim.boards.jam(0, 6, on=False)
    for i in range(PER_CABINET):  # fill cabinet 2's queue with slow opens
        await sim.cloud.send_raw(json.dumps({"id": f"slow-{i}", "key": 2, "command": "open"}))
    busy = await sim.cloud.send_command({"id": "five", "key": 5, "command": "disable"})
    assert busy["ok"]  # another cabinet is not held back
    first = await sim.cloud.send_command({"id": "again", "key": 2, "command": "disable"})
    assert first["ok"] is False and first["error"]["type"] == "BUSY"
    async with asyncio.timeout(20):
        while sim.agent.locker.intake.waiting:
            await asyncio.sleep(0.05)
    second = await sim.cloud.send_command({"id": "again", "key": 2, "command": "disable"})
    assert second["ok"] and second["cabinet"]["enabled"] is False
