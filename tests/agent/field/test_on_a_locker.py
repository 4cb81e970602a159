"""The technician's commands against a real ``locker-agent run`` on the board emulator:
over its socket, through a crash (the socket left behind) and a clean stop."""

import asyncio
import signal

from agent.field.channel import AgentChannel
from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.agent.field.test_technician import cli
from tests.conftest import agent_running, write_small_config

KEY = "cloud-key-81Xq"


async def until_ready(channel, proc, timeout=15.0):
    """Until the agent answers /healthz 200 on its socket."""
    async with asyncio.timeout(timeout):
        while True:
            assert proc.returncode is None, "the agent stopped"
            try:
                code, _ = await asyncio.to_thread(channel.call, "GET", "/healthz")
                if code == 200:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.05)


async def test_status_open_and_selftest_on_a_running_agent(tmp_path):
    boards = KerongBoardEmulator([0])  # nobody shuts a door: each answer reads open
    cloud = FakeCloud(KEY)
    await boards.start()
    await cloud.start()
    path = write_small_config(
        tmp_path,
        cloud=cloud.url,
        secret=f'api_key = "{KEY}"',
        api_port=free_port(),
        token="never-sent-token",
        port=boards.port,
        cabinets={0: 1, 1: 2, 2: 3, 3: 4},
        locker="min_pulse_gap_s = 0.5",
    )
    sock = tmp_path / "agent.sock"  # [storage] dir is tmp_path: the socket is beside it
    channel = AgentChannel(sock)
    try:
        async with agent_running("run", "--config", path) as proc:
            await until_ready(channel, proc)
            boards.set_item(0, 2, True)  # cabinet 1 holds a parcel
            code, _ = await asyncio.to_thread(
                channel.call, "PUT", "/api/lockers/cabinets/3", {"command": "disable"}
            )
            assert code == 200

            code, out, err = await cli("open", "0", "--config", str(path))
            assert code == 0 and "    0  open" in out, err
            code, out, _ = await cli("status", "--config", str(path))
            assert code == 0 and "health: ok" in out
            assert "    1  closed   -        yes      yes" in out  # occupied
            assert "    3  closed   -        no" in out  # disabled

            before = len(boards.bank.unlocked)
            code, out, err = await cli("selftest", "--yes", "--config", str(path), "--pause-s", "0")
            assert code == 0, out + err
            assert "spared: occupied" in out and "spared: disabled" in out
            assert "selftest: all opened (2 opened, 2 spared, 0 failed)" in out
            assert sorted(boards.bank.unlocked[before:]) == [(0, 1), (0, 3)]

            # A crash leaves the socket behind: the CLI says so, and the next start replaces it.
            proc.kill()
            await proc.wait()
        assert sock.is_socket()
        code, _, err = await cli("status", "--config", str(path))
        assert code == 2 and "left by an agent that stopped" in err
        async with agent_running("run", "--config", path) as proc:
            await until_ready(channel, proc)
            code, out, _ = await cli("status", "--config", str(path))
            assert code == 0

            # A clean stop removes it.
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                assert await proc.wait() == 0
        assert not sock.exists()
    finally:
        await cloud.close()
        await boards.close()
