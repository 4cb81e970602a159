"""Fate fills the agent's disk: a real tmpfs (root only) and a filler file until ENOSPC."""

import asyncio
import os

import aiohttp
import pytest

from simulator.run import Simulation
from simulator.web.actions import Actions, StepError
from simulator.web.disk import SmallDisk
from tests.conftest import mounted_disk


@pytest.fixture
def disk(tmp_path):
    yield from mounted_disk(tmp_path / "storage", 16)


async def health(sim):
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sim.api_url}/healthz") as resp,
    ):
        return resp.status, await resp.json()


async def test_a_full_disk_shows_in_health_and_the_change_arrives_once_freed(disk):
    sim = Simulation(storage_dir=disk.path)
    await sim.start()
    try:
        await sim.cloud.wait_for(lambda b: b["event"]["type"] == "startup", timeout=5)
        actions = Actions(sim, disk)
        filled = await actions.run({"who": "fate", "do": "disk_full"})
        assert filled["filled_bytes"] > 0 and disk.full
        await actions.run({"who": "person", "do": "force", "key": 4})
        async with asyncio.timeout(10):
            while (found := await health(sim))[0] == 200:
                await asyncio.sleep(0.05)
        assert any("full" in reason for reason in found[1]["reasons"]), found

        await actions.run({"who": "fate", "do": "disk_free"})
        assert not disk.full
        await sim.cloud.wait_for(lambda c: c == {"key": 4, "front_status": "open"}, timeout=10)
        async with asyncio.timeout(10):
            while (await health(sim))[0] != 200:
                await asyncio.sleep(0.05)
    finally:
        await sim.close()


async def test_without_a_small_disk_the_fault_says_why(sim):
    for verb in ("disk_full", "disk_free"):
        with pytest.raises(StepError, match="no small disk: needs root"):
            await Actions(sim, None, "needs root").run({"who": "fate", "do": verb})


@pytest.mark.skipif(os.geteuid() == 0, reason="root can mount")
def test_mounting_says_root_is_needed(tmp_path):
    assert "needs root" in SmallDisk(tmp_path / "d").mount()


async def test_the_small_disks_config_passes_doctors_disk_check(disk):
    """simulate --small-disk 16: its outbox bound fits the disk, so doctor on the
    simulator's own config does not FAIL storage (a new user's trial found 64 MB)."""
    from agent.field.doctor import check_disk
    from simulator.web.main import fitted_to

    found = {}
    for name, adjust in (("fitted", fitted_to(16)), ("default", None)):
        sim = Simulation(storage_dir=disk.path, adjust=adjust)
        await sim.start()
        try:
            found[name] = [line.level for line in check_disk(sim._config())]
        finally:
            await sim.close()
    assert found["fitted"] and "FAIL" not in found["fitted"], found
    assert "FAIL" in found["default"]  # the 64 MB default cannot fit: the check can fail
