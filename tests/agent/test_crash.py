"""SIGKILL the agent at random moments while doors change and the cloud is down or flapping.

When the cloud comes back, every change the agent had shown (logged) reaches it,
in order per cabinet. The agent is a real subprocess on a real pty.
"""

import asyncio
import json
import random
import signal

import pytest

from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.conftest import AGENT, write_small_config

KEY = "crash-test-key"
CABINETS = 4


def write_config(tmp_path, port, cloud_url, api_port):
    return write_small_config(
        tmp_path,
        cloud=cloud_url,
        secret=f'api_key = "{KEY}"',
        heartbeat_s=5,
        api_port=api_port,
        port=port,
        cabinets={key: key + 1 for key in range(CABINETS)},
    )


def shown_changes(log_path):
    """Per cabinet, the statuses the agent logged as queued changes, in order."""
    shown = {}
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by SIGKILL
        if entry.get("event") == "door.changed" and entry.get("queued"):
            shown.setdefault(entry["key"], []).append(entry["state"])
    return shown


async def ready(log_path, times):
    """Until the log holds ``times`` ``agent.ready`` lines (at most 30 s)."""
    async with asyncio.timeout(30):
        while log_path.read_text().count('"event": "agent.ready"') < times:
            await asyncio.sleep(0.05)


def is_subsequence(needle, haystack):
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


async def toggle_doors(boards, rng, stop):
    while not stop.is_set():
        channel = rng.randint(1, CABINETS)
        if boards.state(0, channel).door_open:
            boards.shut_door(0, channel)
        else:
            boards.force_open(0, channel)
        await asyncio.sleep(rng.uniform(0.08, 0.25))


async def crash_rounds(tmp_path, rounds, seed):
    rng = random.Random(seed)
    boards = KerongBoardEmulator([0])
    cloud = FakeCloud(KEY)
    await boards.start()
    await cloud.start()
    api_port = free_port()
    config = write_config(tmp_path, boards.port, cloud.url, api_port)
    log_path = tmp_path / "agent.log"
    stop = asyncio.Event()
    toggler = asyncio.create_task(toggle_doors(boards, rng, stop))
    try:
        with log_path.open("ab") as log_file:
            for n in range(rounds):
                # down or flapping: most requests fail, some get through
                cloud.heal()
                cloud.fail_next(503, count=10_000) if n % 2 == 0 else [
                    cloud.fail_next(500, count=rng.randint(1, 3)) for _ in range(50)
                ]
                proc = await asyncio.create_subprocess_exec(
                    *AGENT, "run", "--config", str(config), stderr=log_file
                )
                # Killed while it runs, whatever a loaded host makes of its start-up.
                await ready(log_path, times=n + 1)
                await asyncio.sleep(rng.uniform(0.8, 2.5))
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            stop.set()
            await toggler
            cloud.heal()
            proc = await asyncio.create_subprocess_exec(
                *AGENT, "run", "--config", str(config), stderr=log_file
            )
            shown = shown_changes(log_path)
            try:
                async with asyncio.timeout(20):
                    while True:
                        got = {}
                        for entry in cloud.cabinet_updates():
                            got.setdefault(entry["key"], []).append(entry["front_status"])
                        if all(is_subsequence(s, got.get(k, [])) for k, s in shown.items()):
                            break
                        await asyncio.sleep(0.1)
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        assert sum(len(s) for s in shown.values()) >= rounds  # the test did exercise changes
        assert cloud.rejected == [] or all(r["status"] in (500, 503) for r in cloud.rejected)
    finally:
        stop.set()
        await toggler
        await cloud.close()
        await boards.close()


async def test_sigkill_loses_no_shown_change(tmp_path):
    await crash_rounds(tmp_path, rounds=3, seed=1)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", range(3))
async def test_sigkill_loses_no_shown_change_long(tmp_path, seed):
    await crash_rounds(tmp_path, rounds=12, seed=seed)
