"""A stop answers what is in flight: SIGTERM while a lock is being opened.

Finding: SIGTERM while an open was in flight: the lock was pulsed, the agent exited
without answering, and the caller got a dropped connection, so it never learnt the
pulse happened. Now the agent stops taking new work, lets what is in flight finish
or answers it with what it did, then stops (within DESIGN.md's 5 s). The agent is a
real process on the board emulator's pty; the callers are the local API and the
fake cloud's command channel.
"""

import asyncio
import contextlib
import json
import signal
import time

import aiohttp

from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.conftest import agent_running, write_small_config

KEY = "stop-key"


@contextlib.asynccontextmanager
async def _agent(tmp_path, boards, cloud, api_port):
    path = write_small_config(
        tmp_path,
        cloud=cloud.url,
        secret=f'api_key = "{KEY}"\ncommands_url = "{cloud.commands_url}"',
        api_port=api_port,
        port=boards.port,
        cabinets={0: 1, 1: 2},
    )
    async with agent_running("run", "--config", path) as proc:
        async with aiohttp.ClientSession() as http, asyncio.timeout(15):
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{api_port}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        await cloud.wait_for_agent(10)
        yield proc


async def test_sigterm_answers_the_open_in_flight_on_both_paths(tmp_path):
    boards, cloud = KerongBoardEmulator([0]), FakeCloud(KEY)
    await boards.start()
    await cloud.start()
    boards.jam(0, 1)  # cabinet 0: pulsed, never opens: the open waits to confirm
    boards.jam(0, 2)  # cabinet 1 likewise, asked over the channel
    api_port = free_port()
    try:
        async with (
            _agent(tmp_path, boards, cloud, api_port) as proc,
            aiohttp.ClientSession() as http,
        ):
            put = asyncio.create_task(
                http.put(
                    f"http://127.0.0.1:{api_port}/api/lockers/cabinets/0",
                    json={"command": "open"},
                    headers={"Authorization": "Bearer t"},
                )
            )
            await cloud.send_raw(json.dumps({"id": "c1", "key": 1, "command": "open"}))
            async with asyncio.timeout(5):
                while {c for _, c in boards.bank.unlocked} < {1, 2}:  # both locks pulsed
                    await asyncio.sleep(0.02)
            stopped = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            resp = await put  # an answer, not a dropped connection
            body = await resp.json()
            resp.release()
            async with asyncio.timeout(5):
                assert await proc.wait() == 0
        assert time.monotonic() - stopped < 5
        assert resp.status == 409 and body["type"] == "CONFLICT"
        assert "after it had acted" in body["message"]
        answer = await cloud.wait_for_answer(lambda a: a.get("id") == "c1", timeout=1)
        assert answer["ok"] is False and answer["error"]["type"] == "CONFLICT"
        assert "after it had acted" in answer["error"]["message"]
    finally:
        await cloud.close()
        await boards.close()
