"""Pickup codes end to end: ``locker-agent run`` as a process, the lock board emulator
and a scanner on pseudo-terminals, the fake cloud provisioning codes and going away.

Provision, take the cloud away, scan right, wrong, twice, expired; the cloud back and
told once per order; a power cut (SIGKILL) between the pulse and the record; a flood.
"""

import asyncio
import hashlib
import json
import os
import signal
import tty
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator
from simulator.run import free_port
from tests.conftest import AGENT

KEY = "codes-e2e-key"
WAIT = 20.0


def an_hour_ago() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).isoformat()


def sha(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def put(code, key, order, expires="2099-01-01T00:00:00Z"):
    return {
        "key": key,
        "rearload": False,
        "order_id": order,
        "sha256": sha(code),
        "expires_at": expires,
    }


class Scanner:
    """A serial scanner on a pseudo-terminal: the agent opens ``path``."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def scan(self, text: str | bytes) -> None:
        data = text if isinstance(text, bytes) else text.encode() + b"\r\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def close(self):
        os.close(self.master)
        os.close(self.slave)


class Agent:
    """The agent as a process; its JSON log lines read back from ``log``."""

    def __init__(self, tmp_path: Path, boards, cloud, scanners: dict[str, Scanner], extra=""):
        self.api_port = free_port()
        self.log = tmp_path / "agent.log"
        readers = "".join(
            f'[[readers]]\nname = "{name}"\ndriver = "serial"\nport = "{s.path}"\n\n'
            for name, s in scanners.items()
        )
        cabinets = "".join(
            f"[[cabinets]]\nkey = {k}\n"
            f'front = {{ bus = "rs485", board = 0, channel = {k + 1} }}\n\n'
            for k in range(4)
        )
        self.config = tmp_path / "agent.toml"
        self.config.write_text(
            f"[locker]\nmin_pulse_gap_s = 0.5\n{extra}\n\n"
            f'[cloud]\nurl = "{cloud.url}"\napi_key = "{KEY}"\nheartbeat_s = 5\n'
            f'commands_url = "{cloud.commands_url}"\n\n'
            f'[api]\nlisten = "127.0.0.1:{self.api_port}"\ntoken = "t"\n\n'
            f'[storage]\ndir = "{tmp_path}"\n\n'
            f'[[buses]]\nname = "rs485"\ndriver = "kerong-cu16"\nport = "{boards.port}"\n'
            f"boards = [0]\n\n{readers}{cabinets}"
        )
        self.proc = None

    async def start(self):
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *AGENT, "run", "--config", str(self.config), stderr=log
            )

    async def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), 10)

    def lines(self, event: str) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event:
                out.append(entry)
        return out

    async def outcomes(self, count: int) -> list[str]:
        async with asyncio.timeout(WAIT):
            while len(found := self.lines("code.read")) < count:
                await asyncio.sleep(0.05)
        return [e["outcome"] for e in found]

    async def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.api_port}/metrics"
        headers = {"Authorization": "Bearer t"}
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
            return await r.text()

    async def healthz(self):
        url = f"http://127.0.0.1:{self.api_port}/healthz"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            return r.status, await r.json()


def told(cloud, event: str) -> list[dict]:
    return [r["body"] for r in cloud.received if r["body"].get("event", {}).get("type") == event]


@pytest.fixture
async def rig(tmp_path):
    boards = KerongBoardEmulator([0])
    cloud = FakeCloud(KEY)
    await boards.start()
    await cloud.start()
    scanners = {"front": Scanner(), "side": Scanner()}
    agents = []

    def make(**kw):
        agent = Agent(tmp_path, boards, cloud, scanners, **kw)
        agents.append(agent)
        return agent

    yield boards, cloud, scanners, make
    for agent in agents:
        if agent.proc is not None and agent.proc.returncode is None:
            await agent.stop(signal.SIGKILL)
    for scanner in scanners.values():
        scanner.close()
    await cloud.close()
    await boards.close()


async def provision(cloud, codes, drop=()):
    await cloud.wait_for_agent(WAIT)
    answer = await cloud.send_command(
        {"id": "prov", "type": "codes", "put": codes, "drop": list(drop)}, timeout=WAIT
    )
    assert answer["ok"] is True, answer
    return answer


async def until(check, timeout=WAIT):
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def test_codes_open_offline_and_the_cloud_is_told_once_when_back(rig):
    boards, cloud, scanners, make = rig
    agent = make()
    await agent.start()
    await provision(
        cloud,
        [
            put("ALPHA-1", 0, 100),
            put("BRAVO-2", 1, 101),
            put("OLD-3", 2, 102, expires=an_hour_ago()),
        ],
    )
    await cloud.close()  # the network is lost
    # right, wrong, twice, expired, right: each judged before the next is scanned (a
    # scan while the reader's door is opening is not judged at all: "busy")
    for n, code in enumerate(["ALPHA-1", "not-a-code", "ALPHA-1", "OLD-3", "BRAVO-2"], 1):
        scanners["front"].scan(code)
        await agent.outcomes(n)
    assert await agent.outcomes(5) == ["opened", "wrong", "spent", "expired", "opened"]
    assert boards.state(0, 2).door_open and not boards.state(0, 3).door_open
    assert sorted(boards.bank.unlocked) == [(0, 1), (0, 2)]  # once each, nothing else
    await cloud.start()  # the network is back
    await until(lambda: len(told(cloud, "code_opened")) == 2)
    first = len(cloud.received)
    await until(lambda: told(cloud, "active") and len(cloud.received) > first + 1)
    opened = told(cloud, "code_opened")
    assert [b["event"]["order_id"] for b in opened] == [100, 101]  # in order, once each
    assert opened[0]["cabinets"] == [{"key": 0, "front_status": "open"}]
    # the door's own change reached the cloud before the code that opened it
    updates = [
        (b["event"]["type"], c["key"])
        for b in (r["body"] for r in cloud.received)
        for c in b["cabinets"]
    ]
    assert updates.index(("door_changed", 0)) < updates.index(("code_opened", 0))
    assert await agent.stop() == 0
    logged = agent.log.read_text()
    assert "ALPHA-1" not in logged and "not-a-code" not in logged  # never logged


async def test_a_power_cut_between_the_pulse_and_the_record_never_opens_twice(rig):
    boards, cloud, scanners, make = rig
    agent = make()
    await agent.start()
    await provision(cloud, [put("CHARLIE-3", 2, 300)])
    boards.bank.jam(0, 3)  # the confirmation waits: the cut lands after the pulse
    scanners["front"].scan("CHARLIE-3")
    await until(lambda: (0, 3) in boards.bank.unlocked)
    await agent.stop(signal.SIGKILL)
    boards.bank.jam(0, 3, False)
    again = make()
    await again.start()
    await until(lambda: told(cloud, "code_opened"))
    [opened] = told(cloud, "code_opened")
    assert opened["event"] == {
        "type": "code_opened",
        "order_id": 300,
        "side": "front",
        "confirmed": False,
    }
    pulses = len(boards.bank.unlocked)
    scanners["front"].scan("CHARLIE-3")
    await until(lambda: again.lines("code.read"))
    assert again.lines("code.read")[-1]["outcome"] == "spent"
    assert len(boards.bank.unlocked) == pulses
    await asyncio.sleep(1)
    assert len(told(cloud, "code_opened")) == 1
    assert await again.stop() == 0


async def test_a_flood_of_scans_locks_that_reader_out_and_costs_nothing_else(rig):
    boards, cloud, scanners, make = rig
    agent = make()
    await agent.start()
    await provision(cloud, [put("DELTA-4", 3, 400)])
    flood = b"".join(f"guess-{i}\r\n".encode() for i in range(20_000))
    flood += b"x" * 200_000 + b"\n" + bytes(range(256)) * 100 + b"\n"
    await asyncio.to_thread(scanners["front"].scan, flood)
    await until(lambda: told(cloud, "reader_locked_out"))
    [locked] = told(cloud, "reader_locked_out")
    assert locked["event"] == {"type": "reader_locked_out", "reader": "front", "locked_s": 30}
    scanners["front"].scan("DELTA-4")  # locked out: even a right code waits
    scanners["side"].scan("DELTA-4")  # another reader is not
    await until(lambda: boards.state(0, 4).door_open)
    status, health = await agent.healthz()
    assert status == 200, health
    [front] = [r for r in health["pickup"]["readers"] if r["name"] == "front"]
    assert front["locked_out_s"] > 0 and front["codes"] <= 5 + 2 * 30
    assert sum(front["dropped"].values()) > 19_000
    assert boards.bank.unlocked == [(0, 4)]
    await until(lambda: any(e["outcome"] == "opened" for e in agent.lines("code.read")))
    metrics = await agent.metrics()
    assert 'locker_agent_pickup_codes_total{outcome="wrong",reader="front"} 5.0' in metrics
    assert 'locker_agent_pickup_codes_total{outcome="opened",reader="side"} 1.0' in metrics
    assert await agent.stop() == 0
