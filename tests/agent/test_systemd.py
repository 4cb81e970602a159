"""sd_notify over a real Unix datagram socket, and the agent's messages under systemd."""

import asyncio
import os
import signal
import socket

from agent import systemd
from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.conftest import agent_running


def test_notify_sends_one_datagram(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify("READY=1")
        assert sock.recv(100) == b"READY=1"


def test_abstract_namespace(monkeypatch):
    name = f"locker-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"


def test_nothing_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_watchdog_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert systemd.watchdog_interval() is None


async def test_the_agent_under_systemd(tmp_path):
    """READY=1 once started, WATCHDOG=1 from the loop, STOPPING=1 at SIGTERM."""
    boards, cloud = KerongBoardEmulator([0]), FakeCloud("k")
    await boards.start()
    await cloud.start()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[cloud]\nurl = "{cloud.url}"\napi_key = "k"\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\ntoken = "t"\n'
        f'[storage]\ndir = "{tmp_path}"\n'
        f'[[buses]]\nname = "b"\nport = "{boards.port}"\nboards = [0]\n'
        '[[cabinets]]\nkey = 0\nfront = { bus = "b", board = 0, channel = 1 }\n'
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"}
    loop = asyncio.get_running_loop()
    seen: list[bytes] = []
    try:
        async with agent_running("run", "--config", config, env=env) as proc:
            async with asyncio.timeout(15):
                while b"WATCHDOG=1" not in seen:
                    seen.append(await loop.sock_recv(sock, 200))
                proc.send_signal(signal.SIGTERM)
                while b"STOPPING=1" not in seen:
                    seen.append(await loop.sock_recv(sock, 200))
                assert await proc.wait() == 0
    finally:
        sock.close()
        await cloud.close()
        await boards.close()
    assert seen[0].startswith(b"READY=1")


async def test_status_follows_the_state_and_the_watchdog_needs_polling(tmp_path, monkeypatch):
    """STATUS= changes when a board goes silent; WATCHDOG=1 stops when a bus's poll
    task is wedged (the loop itself still turns)."""
    import agent.app
    import agent.systemd
    from simulator.run import Simulation

    monkeypatch.setattr(agent.systemd, "STATUS_EVERY_S", 0.05)
    monkeypatch.setattr(agent.app, "POLL_STALL_S", 0.5)
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    loop = asyncio.get_running_loop()
    sim = Simulation()
    received: list[str] = []

    async def until(predicate, timeout=5.0):
        async with asyncio.timeout(timeout):
            while not predicate():
                received.append((await loop.sock_recv(sock, 4096)).decode())

    await sim.start()
    try:
        await until(lambda: any(m.startswith("READY=1") for m in received))
        ready = next(m for m in received if m.startswith("READY=1"))
        assert "STATUS=2/2 boards, 16 cabinets" in ready and "cloud ok" in ready
        sim.boards.set_offline(1)
        await until(lambda: any("STATUS=1/2 boards" in m for m in received))
        await until(lambda: received[-1] == "WATCHDOG=1")
        bus = next(iter(sim.agent.hardware._kerong.values()))
        bus._poll_task.cancel()  # a wedged poll loop, while the event loop turns on
        await asyncio.sleep(0.8)
        while True:  # drain what came meanwhile
            try:
                received.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
        await asyncio.sleep(0.5)
        later = []
        while True:
            try:
                later.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
        assert "WATCHDOG=1" not in later
    finally:
        await sim.close()
        sock.close()
