"""A locker whose Kerong boards answer their unlocks (every variant the public clients
show), end to end: one pulse an open, the open confirmed, no lock_jammed, no twin."""

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator.kerong_core import VARIANTS


def fast(data):
    data["locker"].update(confirm_s=0.4, jam_retry_s=0.1, health_interval_s=0.2)
    data["buses"][0].update(pulse_s=0.1, stagger_s=0.05, max_concurrent=1)
    # A loaded host must not make a genuine status reply late (the clock now learns
    # the fast timeout back at rest): late here must mean an unlock answer misread.
    data["buses"][0]["reply_timeout_s"] = 0.5


sim_options = {"adjust": fast}
UNLOCK_CAB_2 = bytes.fromhex("02 02 31 03 38")  # board 0, channel 3


async def until_closed(http, key):
    async with asyncio.timeout(5):
        while True:
            async with http.get(f"/api/lockers/cabinets/{key}") as resp:
                if (await resp.json())["state"] == "closed":
                    return
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "variant", ["board-at-once", "lock-at-once", "board-once-moved", "gateway-lock-once-moved"]
)
async def test_a_board_that_answers_its_unlocks_opens_once(sim, http, variant):
    sim.boards.bank.variant = VARIANTS[variant]
    sim.boards.reply_delay_s = VARIANTS[variant].reply_delay_s
    for _ in range(2):
        async with http.put("/api/lockers/cabinets/2", json={"command": "open"}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["state"] == "open"
        sim.boards.shut_door(0, 3)
        await until_closed(http, 2)
    assert sim.boards.received.count(UNLOCK_CAB_2) == 2  # one pulse an open
    assert "lock_jammed" not in [r["body"]["event"]["type"] for r in sim.cloud.received]
    async with http.get("/metrics") as resp:
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    board0 = (("board", "0"), ("bus", "rs485"))
    assert samples[("locker_agent_bus_twin_replies_total", board0)] == 0
    assert samples[("locker_agent_bus_late_replies_total", board0)] == 0
    assert samples[("locker_agent_bus_lost_replies_total", board0)] == 0
    assert samples[("locker_agent_bus_resyncs_total", board0)] == 0
