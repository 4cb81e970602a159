"""A locker whose doors are not known still tells the cloud, and never says a guess.

The agent runs as a process against the fake cloud on loopback. Its only bus's port
is not there (the adapter unplugged at boot), or is a pty whose boards never answer:
the cloud still hears the start, ``bus_offline`` and the heartbeat, with no door
said as open or closed. A door never known beside a known one is ``null`` (ADR 0019).
When the port appears or the boards answer, the real states follow, in order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.conftest import CLOUD_KEY, agent_running

HEARTBEAT_S = 5  # the config's least
DOORS = {(0, "front"), (0, "rear"), (1, "front")}


def one_bus(tmp_path: Path, port: str, cloud_url: str, *, rear_port: str | None = None) -> Path:
    """Bus ``rs485`` (board 0) serves cabinet 0 (front channel 1, rear channel 2) and
    cabinet 1 (front channel 3); with ``rear_port``, cabinet 0's rear is on bus ``rear``
    there instead."""
    rear = '{ bus = "rs485", board = 0, channel = 2 }'
    extra = ""
    if rear_port is not None:
        rear = '{ bus = "rear", board = 0, channel = 1 }'
        extra = f'[[buses]]\nname = "rear"\nport = "{rear_port}"\nboards = [0]\n'
    path = tmp_path / "agent.toml"
    path.write_text(
        "[locker]\nhealth_interval_s = 0.5\n"
        f'[cloud]\nurl = "{cloud_url}"\napi_key = "{CLOUD_KEY}"\nheartbeat_s = {HEARTBEAT_S}\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\ntoken = "t-3kQ9"\n'
        f'[storage]\ndir = "{tmp_path}"\n'
        f'[[buses]]\nname = "rs485"\nport = "{port}"\nboards = [0]\n'
        f"{extra}"
        "[[cabinets]]\nkey = 0\n"
        'front = { bus = "rs485", board = 0, channel = 1 }\n'
        f"rear = {rear}\n"
        '[[cabinets]]\nkey = 1\nfront = { bus = "rs485", board = 0, channel = 3 }\n'
    )
    path.chmod(0o640)
    return path


async def stop_agent(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    assert await proc.wait() == 0


def bodies(cloud: FakeCloud) -> list[dict[str, Any]]:
    return [r["body"] for r in cloud.received]


def said(body: dict[str, Any]) -> set[tuple[int, str]]:
    """The doors a body says open or closed."""
    return {
        (c["key"], side)
        for c in body["cabinets"]
        for side in ("front", "rear")
        if c.get(f"{side}_status") is not None
    }


def first_said(told: list[dict[str, Any]]) -> dict[tuple[int, str], str]:
    """Each door's first status said in ``told``."""
    first: dict[tuple[int, str], str] = {}
    for body in told:
        for c in body["cabinets"]:
            for side in ("front", "rear"):
                if c.get(f"{side}_status") is not None:
                    first.setdefault((c["key"], side), c[f"{side}_status"])
    return first


async def wait_for_states(cloud: FakeCloud, doors: set[tuple[int, str]], timeout: float) -> int:
    """The index of the body in which the last of ``doors`` was first said."""
    async with asyncio.timeout(timeout):
        while True:
            heard: set[tuple[int, str]] = set()
            for i, body in enumerate(bodies(cloud)):
                heard |= said(body)
                if doors <= heard:
                    return i
            await asyncio.sleep(0.05)


async def test_a_bus_that_never_opens_still_tells_start_offline_and_heartbeat(tmp_path, cloud):
    """The port is missing at boot: start-up, bus_offline and a heartbeat reach the
    cloud with no door said; plugged in later, every door's real state follows."""
    plugged = tmp_path / "usb-FTDI_FT232R_USB_UART_A10K3333-if00-port0"
    boards = KerongBoardEmulator([0])
    await boards.start()
    try:
        async with agent_running(
            "run", "--config", one_bus(tmp_path, str(plugged), cloud.url)
        ) as proc:
            await cloud.wait_for(lambda b: b["event"]["type"] == "active", timeout=HEARTBEAT_S + 15)
            before = bodies(cloud)
            plugged.symlink_to(boards.port)  # udev makes the by-id link when it is plugged in
            await cloud.wait_for(lambda b: b["event"]["type"] == "bus_online", timeout=40)
            last = await wait_for_states(cloud, DOORS, timeout=10)
            await stop_agent(proc)
    finally:
        await boards.close()

    events = [b["event"]["type"] for b in before]
    assert events[:2] == ["startup", "bus_offline"], events
    assert "active" in events
    # Nothing was known: no door is said open or closed, and nothing is invented.
    assert all(b["cabinets"] == [] for b in before), before
    assert before[1]["event"] == {"type": "bus_offline", "bus": "rs485", "boards": [0]}
    assert cloud.rejected == []  # every body was one the cloud takes
    # Then the real states, behind what was told before, each door as it is.
    assert first_said(bodies(cloud)[len(before) : last + 1]) == {
        (0, "front"): "closed",
        (0, "rear"): "closed",
        (1, "front"): "closed",
    }


async def test_a_pty_whose_boards_never_answer_is_the_same(tmp_path, cloud):
    """The port opens but the board is silent from the start: the same bodies (the
    heartbeat is the test above's), then the states once it answers."""
    boards = KerongBoardEmulator([0])
    await boards.start()
    boards.set_offline(0)
    boards.force_open(0, 1)  # cabinet 0's front stands open
    try:
        async with agent_running(
            "run", "--config", one_bus(tmp_path, boards.port, cloud.url)
        ) as proc:
            await cloud.wait_for(lambda b: b["event"]["type"] == "bus_offline", timeout=15)
            before = bodies(cloud)
            boards.set_offline(0, False)
            last = await wait_for_states(cloud, DOORS, timeout=15)
            await stop_agent(proc)
    finally:
        await boards.close()

    assert [b["event"]["type"] for b in before][:2] == ["startup", "bus_offline"]
    assert all(b["cabinets"] == [] for b in before), before
    assert first_said(bodies(cloud)[len(before) : last + 1]) == {
        (0, "front"): "open",
        (0, "rear"): "closed",
        (1, "front"): "closed",
    }


async def test_a_door_never_known_beside_a_known_one_is_null(tmp_path, cloud):
    """Cabinet 0's rear is on a bus whose port is missing: every body that carries
    cabinet 0 says its rear as ``null`` (the cloud keeps no stale "closed"), its front
    as sensed; the rear's real state follows once the port appears."""
    front = KerongBoardEmulator([0])
    rear = KerongBoardEmulator([0])
    await front.start()
    await rear.start()
    plugged = tmp_path / "usb-FTDI_FT232R_USB_UART_A10K4444-if00-port0"
    try:
        async with agent_running(
            "run", "--config", one_bus(tmp_path, front.port, cloud.url, rear_port=str(plugged))
        ) as proc:
            offline = await cloud.wait_for(
                lambda b: b["event"]["type"] == "bus_offline", timeout=15
            )
            before = bodies(cloud)
            plugged.symlink_to(rear.port)
            await cloud.wait_for(lambda b: b["event"]["type"] == "bus_online", timeout=40)
            await cloud.wait_for(lambda c: c["key"] == 0 and c.get("rear_status"), timeout=10)
            await stop_agent(proc)
    finally:
        await front.close()
        await rear.close()

    startup = before[0]
    assert startup["event"]["type"] == "startup"
    assert all(c.get("rear_status") is None for b in before for c in b["cabinets"]), before
    assert startup["cabinets"] == [
        {"key": 0, "front_status": "closed", "rear_status": None},
        {"key": 1, "front_status": "closed"},
    ]
    assert offline["event"] == {"type": "bus_offline", "bus": "rear", "boards": [0]}
    assert offline["cabinets"] == [{"key": 0, "front_status": "closed", "rear_status": None}]
    assert cloud.rejected == []
