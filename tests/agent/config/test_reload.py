"""SIGHUP: the config file read again; live timings taken, the rest named, a bad file refused."""

import asyncio
import os
import signal

import structlog

from agent.app import run
from agent.config import load_config
from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.conftest import write_small_config


def write(path, *, port, cloud, storage, left_open_s=120, heartbeat_s=60, api_port):
    assert path == storage / "agent.toml"
    write_small_config(
        storage,
        cloud=cloud,
        heartbeat_s=heartbeat_s,
        api_port=api_port,
        port=port,
        locker=f"left_open_s = {left_open_s}",
    )


async def test_sighup_takes_timings_names_the_rest_and_refuses_a_bad_file(tmp_path):
    boards, cloud = KerongBoardEmulator([0]), FakeCloud("k")
    await boards.start()
    await cloud.start()
    path = tmp_path / "agent.toml"
    api_port = free_port()
    common = {"cloud": cloud.url, "storage": tmp_path, "api_port": api_port}
    write(path, port=boards.port, **common)
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(run(load_config(path), stop, path=str(path)))
        try:
            async with asyncio.timeout(10):
                while not any(e["event"] == "agent.ready" for e in logs):
                    await asyncio.sleep(0.02)

            path.write_text("[locker]\ntimer_s = 'soon'\n")  # a broken edit
            os.kill(os.getpid(), signal.SIGHUP)
            async with asyncio.timeout(5):
                while not any(e["event"] == "config.reload_refused" for e in logs):
                    await asyncio.sleep(0.02)
            assert not task.done()  # the old config keeps running

            # A placeholder is refused as check-config and run refuse it (one verdict).
            write(path, port=boards.port, **common)
            path.write_text(
                path.read_text().replace(cloud.url, "https://REPLACE-WITH-THE-CLOUD-HOST")
            )
            os.kill(os.getpid(), signal.SIGHUP)
            async with asyncio.timeout(5):
                while not any("example's placeholder" in e.get("problem", "") for e in logs):
                    await asyncio.sleep(0.02)
            assert not any(e["event"] == "config.reloaded" for e in logs)

            write(path, port="/dev/ttyNEW", left_open_s=30, heartbeat_s=10, **common)
            os.kill(os.getpid(), signal.SIGHUP)
            async with asyncio.timeout(5):
                while not any(e["event"] == "config.reloaded" for e in logs):
                    await asyncio.sleep(0.02)
            [done] = [e for e in logs if e["event"] == "config.reloaded"]
            assert set(done["changed"]) == {"locker.left_open_s", "cloud.heartbeat_s"}
            [later] = [e for e in logs if e["event"] == "config.restart_needed"]
            assert later["keys"] == ["buses"]  # the port changes only with a restart
            assert not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await boards.close()
            await cloud.close()
