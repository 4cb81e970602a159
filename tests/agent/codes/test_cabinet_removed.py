"""A code a dead run left "opening" for a cabinet since removed from the config.

Finding: at start such a code was spent, but ``code_opened`` was only published when
``cabinets[code.key]`` existed: for a removed cabinet the cloud never heard the pickup
of its order. The feedback body cannot name a cabinet the locker no longer has (each
entry needs a door status), so the event goes with the whole locker's statuses, as
``reader_locked_out`` does; the order id is what the cloud needs. Start never fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import structlog

from agent.codes.held import HeldCodes
from agent.codes.pickup import Pickup
from agent.storage.codes import CodeStore, StoredCode
from simulator.run import Simulation

GONE = 40  # a cabinet key no config here has


def sha(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def left_opening(path, code: str, key: int, order: int, state="opening", rear=False) -> None:
    """``codes.sqlite3`` as a run killed between the pulse and the record leaves it."""
    store = CodeStore(path)
    try:
        row = StoredCode(sha(code), key, rear, order, time.time() + 3600, state)
        store.put([row], [], [])
    finally:
        store.close()


async def test_the_cloud_hears_a_code_opened_for_a_removed_cabinet(tmp_path, locker, outbox):
    path = tmp_path / "codes.sqlite3"
    left_opening(path, "gone", GONE, 777)
    left_opening(path, "here", 2, 778)
    store = CodeStore(path)
    try:
        held = HeldCodes(store, {k: ("front",) for k in locker.cabinets})
        with structlog.testing.capture_logs() as logs:
            Pickup(locker, held).start()
        opened = [m for m in outbox.pending(1000) if m.event == "code_opened"]
        assert [m.detail for m in opened] == [
            {"order_id": 777, "side": "front", "confirmed": False},
            {"order_id": 778, "side": "front", "confirmed": False},
        ]
        assert [c["key"] for c in opened[0].cabinets] == sorted(locker.cabinets)  # the locker
        assert [c["key"] for c in opened[1].cabinets] == [2]  # its own cabinet
        assert held.match("gone").state == "spent" and held.match("here").state == "spent"
        [gone] = [e for e in logs if e["event"] == "code.interrupted_cabinet_gone"]
        assert (gone["key"], gone["order_id"], gone["log_level"]) == (GONE, 777, "warning")
    finally:
        store.close()


async def test_codes_held_for_a_door_the_config_lost_are_named_and_refused(
    tmp_path, locker, actuator
):
    path = tmp_path / "codes.sqlite3"
    left_opening(path, "gone", GONE, 1, state="held")
    left_opening(path, "no-rear", 3, 2, state="held", rear=True)  # its rear door removed
    left_opening(path, "fine", 2, 3, state="held")
    store = CodeStore(path)
    try:
        doors = {k: ("front", "rear") if c.rear else ("front",) for k, c in locker.cabinets.items()}
        held = HeldCodes(store, doors)
        pickup = Pickup(locker, held)
        with structlog.testing.capture_logs() as logs:
            pickup.start()
        [named] = [e for e in logs if e["event"] == "codes.door_gone"]
        assert (named["count"], named["keys"]) == (2, [3, GONE])
        assert await pickup.scanned("front", "gone") == "refused"
        assert await pickup.scanned("front", "no-rear") == "refused"
        assert held.match("no-rear").state == "held" and actuator.pulses == []
        assert await pickup.scanned("front", "fine") == "opened"
    finally:
        store.close()


async def test_an_agent_started_without_the_cabinet_tells_the_cloud_and_runs(tmp_path):
    left_opening(tmp_path / "codes.sqlite3", "GOLF-7", GONE, 4242)
    sim = Simulation(storage_dir=tmp_path)
    await sim.start()
    try:
        assert sim.agent is not None
        body = await sim.cloud.wait_for(
            lambda b: b.get("event", {}).get("type") == "code_opened", timeout=10
        )
        assert body["event"] == {
            "type": "code_opened",
            "order_id": 4242,
            "side": "front",
            "confirmed": False,
        }
        keys = [c["key"] for c in body["cabinets"]]
        assert GONE not in keys and keys == sorted(sim.agent.locker.cabinets)
        sim.scanner.scan("GOLF-7")  # scanned again: spent, nothing moves, nothing breaks
        pickup = sim.agent.codes.pickup
        async with asyncio.timeout(10):
            while pickup.outcomes.get("spent") != 1:
                await asyncio.sleep(0.02)
        assert sim.boards is not None and sim.boards.bank.unlocked == []
        assert not [p for p in sim.agent.problems() if "code" in p]
        json.dumps(body)  # a body the cloud can take as it is
    finally:
        await sim.close()
