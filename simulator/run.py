"""``locker-agent simulate``: the real agent against emulated boards and a fake cloud.

The agent talks to the emulator through a pseudo-terminal with its real Kerong
driver, and to the fake cloud over HTTP: nothing in ``agent`` knows it is simulated.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import tempfile
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from agent.app import Agent
from agent.config import Config, parse_config
from simulator.cloud import FakeCloud
from simulator.kerong_board import KerongBoardEmulator


def free_port() -> int:
    """A loopback port free right now (the config rightly refuses port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_config_data() -> dict[str, Any]:
    text = resources.files("simulator").joinpath("default.toml").read_text()
    return tomllib.loads(text)


def simulated_config(
    data: dict[str, Any],
    *,
    port: str,
    cloud: FakeCloud,
    api_port: int,
    storage_dir: Path,
) -> Config:
    """The embedded locker with the simulator's live addresses filled in."""
    data["buses"][0]["port"] = port
    data["cloud"]["url"] = cloud.url
    data["cloud"]["commands_url"] = cloud.commands_url
    data["api"]["listen"] = f"127.0.0.1:{api_port}"
    data["storage"]["dir"] = str(storage_dir)
    return parse_config(data, storage_dir)


class Simulation:
    """Board emulator + fake cloud + the agent, started and stopped together."""

    def __init__(
        self,
        *,
        api_port: int = 0,
        cloud_port: int = 0,
        auto_shut_after: float | None = None,
        storage_dir: Path | None = None,
        adjust: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._data = default_config_data()
        if adjust is not None:
            adjust(self._data)  # tests shorten timings
        self._api_port = api_port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if storage_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="locker-agent-sim-")
            storage_dir = Path(self._tmp.name)
        self._storage_dir = storage_dir
        bus = self._data["buses"][0]
        self.boards = KerongBoardEmulator(bus["boards"])
        self.boards.auto_shut_after = auto_shut_after
        self.cloud = FakeCloud(self._data["cloud"]["api_key"], port=cloud_port)
        self.agent: Agent | None = None

    @property
    def token(self) -> str:
        return str(self._data["api"]["token"])

    @property
    def api_url(self) -> str:
        assert self.agent is not None
        return f"http://127.0.0.1:{self.agent.api.port}"

    async def start(self) -> None:
        await self.boards.start()
        await self.cloud.start()
        config = simulated_config(
            self._data,
            port=self.boards.port,
            cloud=self.cloud,
            api_port=self._api_port,
            storage_dir=self._storage_dir,
        )
        self.agent = Agent(config)
        await self.agent.start()

    async def close(self) -> None:
        if self.agent is not None:
            await self.agent.close()
            self.agent = None
        await self.cloud.close()
        await self.boards.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def banner(self) -> str:
        return "\n".join(
            [
                "locker-agent simulator is running (Ctrl-C stops it)",
                f"  agent API    {self.api_url}   token: {self.token}",
                f"  fake cloud   {self.cloud.url}/_sim/feedback   (feedback received)",
                f"  lock boards  KR-CU16 {self.boards_list()} on {self.boards.port}",
                "  open cabinet 5:",
                f"    curl -X PUT -H 'Authorization: Bearer {self.token}' "
                f'-d \'{{"command": "open"}}\' {self.api_url}/api/lockers/cabinets/5',
                "  then watch the feedback:",
                f"    curl {self.cloud.url}/_sim/feedback",
            ]
        )

    def boards_list(self) -> str:
        return ", ".join(f"board {b}" for b in self._data["buses"][0]["boards"])


async def simulate(*, api_port: int = 8080, cloud_port: int = 8004) -> None:
    """Run the simulation until SIGINT/SIGTERM; a simulated person shuts doors after 5 s."""
    sim = Simulation(api_port=api_port, cloud_port=cloud_port, auto_shut_after=5.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
        print(sim.banner(), flush=True)
        await stop.wait()
    finally:
        await sim.close()
